"""Small, real models for demos, tutorials and benchmarks, trained in seconds on data
that scikit-learn ships (no download): the 8×8 handwritten digits.

Importing this module imports torch and scikit-learn; ``import nbdeploy`` does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._deps import require

__all__ = [
    "Digits",
    "digits",
    "train_digits_cnn",
    "train_digits_pipeline",
]


@dataclass(frozen=True)
class Digits:
    """scikit-learn's digits split into train and validation sets.

    Attributes:
        x_train: Flat features, float32, shape ``[n, 64]``, scaled to [0, 1].
        y_train: Labels 0-9.
        x_val: Validation features.
        y_val: Validation labels.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray

    @staticmethod
    def images(x: np.ndarray) -> np.ndarray:
        """Flat features as ``[n, 1, 8, 8]`` images for a CNN."""
        return x.reshape(-1, 1, 8, 8)


def digits(val_fraction: float = 0.25, seed: int = 0) -> Digits:
    """Load and split the digits data (1,797 images) deterministically."""
    datasets = require("sklearn.datasets", extra="sklearn", feature="The digits example")
    x, y = datasets.load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = (x[order] / 16.0).astype(np.float32), y[order].astype(np.int64)
    cut = int(len(x) * (1 - val_fraction))
    return Digits(x[:cut], y[:cut], x[cut:], y[cut:])


def train_digits_pipeline(data: Digits | None = None) -> Any:
    """A scikit-learn pipeline (scaler + logistic regression) fitted on the digits."""
    require("sklearn", extra="sklearn", feature="The digits example")
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = data or digits()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return model.fit(data.x_train, data.y_train)


def train_digits_cnn(
    data: Digits | None = None, *, epochs: int = 15, seed: int = 0, outlier: float | None = None
) -> Any:
    """A small CNN (Conv→BatchNorm→ReLU twice, then a linear head) trained on the digits.

    Takes a few seconds on two CPU cores and reaches ~97% validation accuracy.

    Args:
        data: The digits (loaded when not given).
        epochs: Passes over the training data.
        seed: Seeds the initial weights and the batches.
        outlier: Scale the second block's most active channel up by this factor after
            training (its BatchNorm's scale and shift) and the next convolution's
            weights on it down by as much: the same function in float (ReLU and max
            pooling are positively homogeneous), but an activation with one channel
            ``outlier`` times larger than the rest, as large language models have. int8
            with one scale per activation tensor then rounds the other channels to
            zero: the model ``nbd.quantize(..., max_drop=)`` is tested on.
    """
    torch = require("torch", extra="torch", feature="The digits CNN example")
    from torch import nn

    data = data or digits()
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1), nn.Linear(64, 10),
    )  # fmt: skip
    model = _fit(model, Digits.images(data.x_train), data.y_train, epochs)
    if outlier is not None:
        with torch.no_grad():  # the channel most active on the training data
            seen = model[:6](torch.from_numpy(Digits.images(data.x_train)))
            channel = int(seen.mean((0, 2, 3)).argmax())
            model[4].weight[channel] *= outlier
            model[4].bias[channel] *= outlier
            model[7].weight[:, channel] /= outlier
    return model


def _fit(model: Any, x_train: np.ndarray, y_train: np.ndarray, epochs: int) -> Any:
    """Train ``model`` with Adam on cross-entropy, in batches of 64; returns it in eval mode."""
    torch = require("torch", extra="torch", feature="Training an example")
    nn = torch.nn

    x, y = torch.from_numpy(x_train), torch.from_numpy(y_train)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(x)).split(64):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
    return model.eval()
