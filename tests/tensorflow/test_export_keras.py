"""Keras models and tf.Modules export to ONNX and to a SavedModel, with parity proven."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import nbdeploy as nbd

from .conftest import (
    Scorer,
    Subclassed,
    digits_cnn,
    sequence_model,
    text_model,
    two_heads,
)


def test_a_sequential_cnn_exports_with_a_dynamic_batch(images) -> None:
    model = digits_cnn()
    art = nbd.export(model, images)
    assert art.name == "digits_cnn"
    assert [(s.name, s.dtype, s.shape) for s in art.inputs] == [
        ("input", "float32", ("batch", 8, 8, 1))
    ]
    assert [(s.name, s.shape) for s in art.outputs] == [("output", ("batch", 10))]
    assert art.parity is not None and art.parity.ok and art.parity.batch_sizes == (4, 5)
    assert art.parity.reference.startswith("keras 3.")
    seven = np.random.default_rng(7).random((7, 8, 8, 1), dtype=np.float32)
    np.testing.assert_allclose(art.run(seven)["output"], model(seven).numpy(), atol=1e-5)
    assert (
        art.lineage.framework == "keras" and "tf2onnx" in art.lineage.steps[-1].detail["exporter"]
    )


def test_a_functional_model_keeps_its_input_and_output_names(images) -> None:
    art = nbd.export(two_heads(), images)
    assert [s.name for s in art.inputs] == ["image"]
    assert [s.name for s in art.outputs] == ["logits", "score"]


def test_a_model_that_declares_its_inputs_exports_without_an_example() -> None:
    art = nbd.export(two_heads())
    assert art.parity is not None and art.parity.ok
    assert art.inputs[0].shape == ("batch", 8, 8, 1)


def test_a_subclassed_model_never_called_exports_its_tuple(images) -> None:
    art = nbd.export(Subclassed(), images.astype(np.float64))  # float64 data, float32 model
    assert art.name == "subclassed" and art.inputs[0].dtype == "float32"
    assert [s.name for s in art.outputs] == ["output_0", "output_1"]
    assert art.parity is not None and art.parity.ok


def test_a_tf_module_exports_through_its_signature() -> None:
    module = Scorer()
    art = nbd.export(module, name="scorer")  # its inputs made from the signature
    assert [(s.name, s.shape) for s in art.inputs] == [("x", ("batch", 5))]
    assert [s.name for s in art.outputs] == ["y"]
    assert art.lineage.framework == "tensorflow"
    x = np.random.default_rng(0).random((3, 5), dtype=np.float32)
    with_example = nbd.export(module, x)
    assert with_example.parity is not None and with_example.parity.batch_sizes == (3, 4)
    np.testing.assert_allclose(art.run(x)["y"], module(x)["y"].numpy(), atol=1e-6)


def test_captured_constants_and_recurrent_loops_convert() -> None:
    """Keras's model.export(format="onnx") and tf2onnx's from_function leave a
    Normalization layer's statistics as graph inputs; ours freezes them."""
    x = np.random.default_rng(5).random((3, 6, 5))
    art = nbd.export(sequence_model(), x)
    assert [s.name for s in art.inputs] == ["seq"]
    assert art.parity is not None and art.parity.ok
    ops = {node.op_type for node in art.onnx.graph.node}
    assert "Loop" in ops or "GRU" in ops or "Scan" in ops


def test_several_inputs_by_position_or_by_name_and_integer_tokens() -> None:
    rng = np.random.default_rng(6)
    tokens, extra = rng.integers(0, 50, (3, 12)), rng.random((3, 3))
    model = text_model()
    by_position = nbd.export(model, (tokens, extra))
    assert [(s.name, s.dtype) for s in by_position.inputs] == [
        ("tokens", "int32"),
        ("extra", "float32"),
    ]
    by_name = nbd.export(model, {"tokens": tokens, "extra": extra})
    assert by_name.parity is not None and by_name.parity.ok
    want = model([tokens.astype(np.int32), extra.astype(np.float32)]).numpy()
    np.testing.assert_allclose(
        by_name.run({"tokens": tokens, "extra": extra})["output"], want, atol=1e-5
    )


def test_a_savedmodel_export_runs_saves_and_loads(images, tmp_path: Path) -> None:
    model = two_heads()
    art = nbd.export(model, images, format="savedmodel")
    assert art.format == "savedmodel"
    assert [s.name for s in art.outputs] == ["logits", "score"]
    assert art.parity is not None and art.parity.ok and art.parity.batch_sizes == (4, 5)
    path = art.save(tmp_path / "two_heads")
    assert path.name == "two_heads.savedmodel" and (path / "saved_model.pb").is_file()
    back = nbd.load(path)
    assert (back.name, back.format, back.inputs, back.outputs) == (
        art.name,
        "savedmodel",
        art.inputs,
        art.outputs,
    )
    assert back.parity is not None and back.example is not None
    np.testing.assert_allclose(back.run(images)["score"], model(images)["score"].numpy(), atol=1e-5)


def test_a_foreign_savedmodel_folder_loads_with_its_signature(tmp_path: Path) -> None:
    import tensorflow as tf

    module = Scorer()
    tf.saved_model.save(
        module, str(tmp_path / "scorer"), signatures={"serving_default": module.__call__}
    )
    art = nbd.load(tmp_path / "scorer")
    assert art.format == "savedmodel" and art.lineage.framework == "tensorflow"
    assert [(s.name, s.shape) for s in art.inputs] == [("x", ("batch", 5))]
    x = np.ones((2, 5), np.float32)
    np.testing.assert_allclose(art.run(x)["y"], module(x)["y"].numpy(), atol=1e-6)


def test_a_keras_file_loads_as_an_onnx_artifact(images, tmp_path: Path) -> None:
    model = digits_cnn()
    model.save(tmp_path / "digits.keras")
    art = nbd.load(tmp_path / "digits.keras")
    assert (
        art.format == "onnx" and art.name == "digits" and art.parity is not None and art.parity.ok
    )
    np.testing.assert_allclose(art.run(images)["output"], model(images).numpy(), atol=1e-5)


def test_mistakes_say_what_to_do(images, tmp_path: Path) -> None:
    import tensorflow as tf

    with pytest.raises(nbd.ExportError, match="input_signature"):
        nbd.export(tf.Module())
    with pytest.raises(nbd.ExampleError, match="example="):
        nbd.export(Subclassed())
    with pytest.raises(nbd.ConfigError, match=r"savedmodel.*TensorFlow or Keras model"):
        nbd.export(
            onnx.helper.make_model(onnx.helper.make_graph([], "g", [], [])), format="savedmodel"
        )
    (tmp_path / "empty").mkdir()
    with pytest.raises(nbd.ArtifactError, match="SavedModel folder"):
        nbd.load(tmp_path / "empty")
    (tmp_path / "bad.keras").write_bytes(b"not a zip")
    with pytest.raises(nbd.ArtifactError, match="Keras cannot load"):
        nbd.load(tmp_path / "bad.keras")
