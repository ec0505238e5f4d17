from __future__ import annotations

import numpy as np
import pytest

import nbdeploy as nbd

torch = pytest.importorskip("torch")
from tests import zoo  # noqa: E402


def _check_other_batch(
    art: nbd.Artifact, model: torch.nn.Module, feed: dict[str, np.ndarray]
) -> None:
    """The export runs at a batch size neither the example nor parity used, and agrees."""
    big = {k: np.concatenate([v] * 3) for k, v in feed.items()}
    got = art.run(big)
    with torch.no_grad():
        tensors = {k: torch.from_numpy(v) for k, v in big.items()}
        want = model(**tensors)
    want_list = (
        list(want.values())
        if isinstance(want, dict)
        else list(want)
        if isinstance(want, tuple)
        else [want]
    )
    for (name, value), ref in zip(got.items(), want_list, strict=True):
        np.testing.assert_allclose(value, ref.numpy(), atol=1e-4, rtol=1e-3, err_msg=name)


def test_cnn_with_batchnorm_exports_with_parity(rng: np.random.Generator) -> None:
    model = zoo.seeded(zoo.ConvBnNet())
    x = rng.standard_normal((2, 1, 8, 8), dtype=np.float32)
    art = nbd.export(model, torch.from_numpy(x), name="cnn")
    assert art.format == "onnx"
    assert [s.name for s in art.inputs] == ["image"]
    assert art.inputs[0].shape == ("batch", 1, 8, 8)
    assert art.outputs[0].shape[0] == "batch"
    assert art.parity is not None and art.parity.ok
    assert art.parity.batch_sizes == (2, 3)
    assert art.parity.max_abs < 1e-4
    assert art.lineage.framework == "torch"
    assert art.lineage.steps[0].detail["exporter"] == "dynamo"
    _check_other_batch(art, model, {"image": x})


def test_export_leaves_the_users_model_in_training_mode(rng: np.random.Generator) -> None:
    model = zoo.seeded(zoo.ConvBnNet()).train()
    nbd.export(model, torch.from_numpy(rng.standard_normal((2, 1, 8, 8), dtype=np.float32)))
    assert model.training and all(m.training for m in model.modules())


def test_batch_of_one_example_still_gets_a_dynamic_batch(rng: np.random.Generator) -> None:
    model = zoo.seeded(zoo.ConvBnNet())
    x = rng.standard_normal((1, 1, 8, 8), dtype=np.float32)
    art = nbd.export(model, x)
    assert art.inputs[0].shape[0] == "batch"
    assert art.parity is not None and art.parity.batch_sizes == (1, 2)
    _check_other_batch(art, model, {"image": x})


def test_rnn_with_integer_inputs(rng: np.random.Generator) -> None:
    model = zoo.seeded(zoo.TokenGru())
    tokens = rng.integers(0, 50, (2, 7))
    art = nbd.export(model, torch.from_numpy(tokens), name="gru")
    assert art.inputs[0].dtype == "int64"
    assert art.parity is not None and art.parity.ok
    _check_other_batch(art, model, {"tokens": tokens})


def test_transformer_with_keyword_inputs_and_dict_outputs(rng: np.random.Generator) -> None:
    model = zoo.seeded(zoo.TinyTransformer())
    example = {
        "input_ids": torch.from_numpy(rng.integers(0, 100, (2, 9))),
        "attention_mask": torch.ones(2, 9, dtype=torch.int64),
    }
    art = nbd.export(model, example, name="tiny-bert")
    assert [s.name for s in art.inputs] == ["input_ids", "attention_mask"]
    assert [s.name for s in art.outputs] == ["logits", "last_hidden_state"]
    assert art.parity is not None and art.parity.ok
    _check_other_batch(art, model, {k: v.numpy() for k, v in example.items()})


def test_multi_input_multi_output_keeps_names(rng: np.random.Generator) -> None:
    model = zoo.seeded(zoo.TwoHeads())
    example = (torch.randn(3, 6), torch.from_numpy(rng.integers(0, 10, (3,))))
    art = nbd.export(model, example)
    assert [s.name for s in art.inputs] == ["features", "category"]
    assert [s.name for s in art.outputs] == ["output_0", "output_1"]
    assert art.name == "two_heads"
    _check_other_batch(art, model, {"features": example[0].numpy(), "category": example[1].numpy()})


def test_torchscript_export_trace_and_script(rng: np.random.Generator, tmp_path) -> None:
    model = zoo.seeded(zoo.ConvBnNet())
    x = rng.standard_normal((2, 1, 8, 8), dtype=np.float32)
    for script in (False, True):
        art = nbd.export(model, x, format="torchscript", script=script, name="cnn-ts")
        assert art.format == "torchscript"
        assert art.parity is not None and art.parity.ok
        loaded = nbd.load(art.save(tmp_path / f"cnn-{script}"))
        assert loaded.name == "cnn-ts" and loaded.parity == art.parity
        assert loaded.inputs == art.inputs
        np.testing.assert_allclose(loaded.run(x)["output"], art.run(x)["output"], rtol=1e-6)


def test_parity_error_names_output_and_keeps_artifact() -> None:
    with pytest.raises(nbd.ParityError) as info:
        nbd.export(zoo.seeded(zoo.ConvBnNet()), torch.randn(2, 1, 8, 8), atol=0, rtol=0)
    err = info.value
    assert err.output == "output" and err.batch_size == 2 and 0 < err.max_abs < 1e-4
    assert "on output 'output' at batch size 2" in str(err) and "atol=/rtol=" in str(err)
    assert isinstance(err.artifact, nbd.Artifact)  # type: ignore[attr-defined]


def test_export_that_froze_the_batch_size_fails_parity() -> None:
    with pytest.raises(nbd.ParityError) as info:
        nbd.export(zoo.BatchAsConstant(), torch.randn(4, 3), name="frozen")
    assert info.value.batch_size == 5
    assert "batch size 5" in str(info.value) and "dynamic_batch=False" in str(info.value)


class _ValueBranch(torch.nn.Module):
    """Python control flow on a tensor's value: torch.export refuses it, tracing does not."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return x * 2
        return x * 3


def test_dynamo_failure_falls_back_to_the_torchscript_exporter_and_says_why() -> None:
    art = nbd.export(_ValueBranch(), torch.rand(2, 3) + 0.1)
    detail = art.lineage.steps[0].detail
    assert detail["exporter"] == "torchscript"
    assert detail.get("dynamo_failed")
    assert art.parity is not None and art.parity.ok
    art = nbd.export(zoo.BatchAsConstant(), torch.randn(4, 3), dynamic_batch=False)
    assert art.parity is not None and art.parity.batch_sizes == (4,)


def test_model_with_a_fixed_batch_size_is_told_to_say_so() -> None:
    with pytest.raises(nbd.ExampleError, match=r"fails at batch size 5.*dynamic_batch=False"):
        nbd.export(zoo.FixedBatch(), torch.randn(4, 3))
    art = nbd.export(zoo.FixedBatch(), torch.randn(4, 3), dynamic_batch=False)
    assert art.parity is not None and art.parity.ok


def test_missing_example_is_a_clear_error() -> None:
    with pytest.raises(nbd.ExampleError, match="pass example="):
        nbd.export(zoo.ConvBnNet())


def test_example_of_the_wrong_shape_names_the_problem() -> None:
    with pytest.raises(
        nbd.ExampleError, match=r"raised RuntimeError on the example \{'image': \(\(2, 3, 8, 8\)"
    ):
        nbd.export(zoo.ConvBnNet(), torch.randn(2, 3, 8, 8))


def test_example_of_the_wrong_type() -> None:
    with pytest.raises(nbd.ExampleError, match="'image' is a list"):
        nbd.export(zoo.ConvBnNet(), [[1.0, 2.0]])


class _Unexportable(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.qr(x)[0]  # no ONNX exporter handles QR


def test_export_failure_wraps_the_exporter_error_and_names_the_operator() -> None:
    with pytest.raises(nbd.ExportError) as info:
        nbd.export(_Unexportable(), torch.randn(2, 4, 4))
    err = info.value
    assert err.__cause__ is not None
    assert err.operator == "aten::linalg_qr"
    assert "neither torch exporter" in str(err)
