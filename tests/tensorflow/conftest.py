"""Keras and TensorFlow models for the tests of this folder: small, seeded, built fresh."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32)


def digits_cnn() -> keras.Model:
    """A Sequential CNN with BatchNormalization, as a Keras tutorial writes one."""
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ],
        name="digits_cnn",
    )


def two_heads() -> keras.Model:
    """A functional model with a named input and two named outputs (a dict)."""
    keras.utils.set_random_seed(1)
    image = keras.Input((8, 8, 1), name="image")
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(image))
    outputs = {"logits": keras.layers.Dense(3)(h), "score": keras.layers.Dense(1)(h)}
    return keras.Model(image, outputs, name="two_heads")


class Subclassed(keras.Model):
    """A subclassed model returning a tuple; never called before export."""

    def __init__(self) -> None:
        super().__init__()
        self.flatten = keras.layers.Flatten()
        self.dense = keras.layers.Dense(5)

    def call(self, x):
        flat = self.flatten(x)
        return self.dense(flat), flat


class Scorer(tf.Module):
    """A plain tf.Module whose __call__ is a tf.function with a signature."""

    def __init__(self) -> None:
        super().__init__()
        self.w = tf.Variable(np.random.default_rng(2).random((5, 2), dtype=np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 5], tf.float32, name="x")])
    def __call__(self, x):
        return {"y": tf.nn.relu(x @ self.w)}


def sequence_model() -> keras.Model:
    """Normalization (adapted: its statistics are captured constants), attention, a GRU:
    what tf2onnx's from_function and Keras's own ONNX export leave unrunnable."""
    keras.utils.set_random_seed(3)
    seq = keras.Input((6, 5), name="seq")
    norm = keras.layers.Normalization()
    norm.adapt(np.random.default_rng(3).random((20, 6, 5), dtype=np.float32))
    h = norm(seq)
    h = keras.layers.MultiHeadAttention(2, 4)(h, h)
    return keras.Model(seq, keras.layers.GRU(7)(h), name="sequence")


def text_model() -> keras.Model:
    """Token ids (int32) and a second, float input; Embedding, LSTM, Dropout."""
    keras.utils.set_random_seed(4)
    tokens = keras.Input((12,), dtype="int32", name="tokens")
    extra = keras.Input((3,), name="extra")
    h = keras.layers.LSTM(8)(keras.layers.Embedding(50, 8)(tokens))
    h = keras.layers.Concatenate()([keras.layers.Dropout(0.5)(h), extra])
    return keras.Model([tokens, extra], keras.layers.Dense(2)(h), name="text")
