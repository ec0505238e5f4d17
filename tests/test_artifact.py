from __future__ import annotations

import dataclasses
import gc
import pickle
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import nbdeploy as nbd
from nbdeploy import _onnxio
from nbdeploy.exporters.report import ExportReport
from nbdeploy.provenance import compare_outputs
from tests import onnx_models
from tests.graph import helpers


def test_onnx_passthrough_keeps_the_users_proto_and_checks_the_example() -> None:
    proto = onnx_models.affine()
    before = proto.SerializeToString()
    art = nbd.export(proto, np.ones((2, 3), np.float32), name="affine")
    assert proto.SerializeToString() == before
    assert art.parity is None and art.lineage.framework == "onnx"
    np.testing.assert_allclose(art.run(np.ones((1, 3), np.float32))["y"], [[6.5, 8.0]])
    with pytest.raises(nbd.ExampleError, match="input 'x' has size 4 on axis 1, the model needs 3"):
        nbd.export(proto, np.ones((2, 4), np.float32))


def test_invalid_onnx_is_an_export_error() -> None:
    proto = onnx_models.affine()
    proto.graph.node[0].input[1] = "missing"
    with pytest.raises(nbd.ExportError, match="not valid"):
        nbd.export(proto)


def test_save_and_load_keep_name_lineage_parity(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Softmax(-1)).eval()
    art = nbd.export(model, torch.randn(2, 4), name="soft")
    path = art.save(tmp_path / "soft")
    assert path.name == "soft.onnx"
    loaded = nbd.load(path)
    assert (loaded.name, loaded.lineage, loaded.parity) == (art.name, art.lineage, art.parity)
    assert loaded.inputs == art.inputs and loaded.outputs == art.outputs
    x = np.random.default_rng(0).standard_normal((5, 4), dtype=np.float32)
    np.testing.assert_array_equal(loaded.run(x)["output"], art.run(x)["output"])
    # Loading a plain .onnx file works too, by path, through export.
    plain = tmp_path / "plain.onnx"
    onnx.save_model(onnx_models.affine(), plain)
    assert nbd.export(plain).name == "plain"


def test_the_example_travels_with_the_saved_model_up_to_its_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Steps after a load check parity on the example, not on random inputs (which
    cannot be right for inputs whose sizes depend on each other, like a decoder's cache
    and mask); an example past 4 MiB is not kept."""
    from nbdeploy import _feed

    art = nbd.export(onnx_models.affine(), np.arange(6, dtype=np.float32).reshape(2, 3))
    assert art.example is not None
    back = nbd.load(art.save(tmp_path / "a.onnx"))
    assert back.example is not None and list(back.example) == list(art.example)
    for name, value in art.example.items():
        np.testing.assert_array_equal(back.example[name], value)
        assert back.example[name].dtype == value.dtype
    monkeypatch.setattr(_feed, "SAVED_EXAMPLE_BYTES", 4)
    assert nbd.load(art.save(tmp_path / "b.onnx")).example is None
    assert _feed.unpack("not an archive") is None


def test_load_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(nbd.ArtifactError, match="no model file"):
        nbd.load(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf at all \xff\xff")
    with pytest.raises(nbd.ArtifactError, match="not an ONNX model"):
        nbd.load(junk)


def test_loading_a_torch_save_file_says_what_it_is_and_what_to_do(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    model = torch.nn.Linear(3, 2)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    torch.save(model, tmp_path / "whole.pt")
    (tmp_path / "junk.pt").write_bytes(b"not an archive")
    with pytest.raises(nbd.ArtifactError, match=r"state_dict saved with torch\.save") as caught:
        nbd.load(tmp_path / "w.pt")
    assert "model.load_state_dict" in str(caught.value) and "nbd.export" in str(caught.value)
    assert isinstance(caught.value.__cause__, RuntimeError)
    with pytest.raises(nbd.ArtifactError, match=r"whole nn\.Module\) pickled with torch\.save"):
        nbd.load(tmp_path / "whole.pt")
    with pytest.raises(nbd.ArtifactError, match=r"is not a TorchScript file.*torch\.jit\.script"):
        nbd.load(tmp_path / "junk.pt")
    torch.jit.script(model).save(tmp_path / "ts.pt")  # the real thing still loads
    assert nbd.load(tmp_path / "ts.pt").format == "torchscript"


def test_external_data_outside_the_folder_is_refused(tmp_path: Path) -> None:
    model = onnx_models.affine()
    tensor = model.graph.initializer[0]
    tensor.data_location = onnx.TensorProto.EXTERNAL
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.external_data.add(key="location", value="../../etc/passwd")
    onnx.save_model(model, tmp_path / "evil.onnx")
    with pytest.raises(nbd.ArtifactError, match="outside the model's folder"):
        nbd.load(tmp_path / "evil.onnx")


def _save_with_data_at(folder: Path, location: str) -> Path:
    """The affine model in ``folder`` with its weights in ``location`` (relative to it)."""
    (folder / location).parent.mkdir(parents=True, exist_ok=True)
    path = folder / "m.onnx"
    onnx.save_model(onnx_models.affine(), path, save_as_external_data=True,
                    all_tensors_to_one_file=True, location=location, size_threshold=0)  # fmt: skip
    return path


def test_external_data_in_a_subfolder_loads_like_onnxruntime(tmp_path: Path) -> None:
    import onnxruntime as ort

    path = _save_with_data_at(tmp_path / "model", "data/w.bin")
    x = np.ones((2, 3), np.float32)
    want = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    art = nbd.load(path)
    shutil.rmtree(tmp_path / "model")  # the artifact keeps its own copy
    np.testing.assert_array_equal(art.run(x)["y"], want)
    np.testing.assert_array_equal(nbd.load(art.save(tmp_path / "again.onnx")).run(x)["y"], want)


def test_weights_in_several_data_files_save_into_one_and_answer_the_same(tmp_path: Path) -> None:
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    model = onnx.parser.parse_model("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 4] x) => (float[N, 300] y) {
            xw = MatMul (x, W)
            y = Add (xw, b)
        }""")
    model.graph.initializer.extend(
        numpy_helper.from_array(rng.standard_normal(shape, np.float32), name)
        for name, shape in {"W": (4, 300), "b": (300,)}.items()
    )  # both past the 1 KiB under which a saved tensor stays inside the protobuf
    path = tmp_path / "model" / "m.onnx"
    path.parent.mkdir()
    onnx.save_model(model, path, save_as_external_data=True,
                    all_tensors_to_one_file=False, size_threshold=0)  # fmt: skip
    assert sorted(f.name for f in path.parent.iterdir()) == ["W", "b", "m.onnx"]
    x = rng.standard_normal((5, 4), np.float32)
    want = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    art = nbd.load(path)
    shutil.rmtree(path.parent)  # the artifact keeps its own copies
    np.testing.assert_array_equal(art.run(x)["y"], want)

    saved = art.save(tmp_path / "out" / "n.onnx")
    assert sorted(f.name for f in saved.parent.iterdir()) == ["n.onnx", "n.onnx.data"]
    proto = onnx.load(saved, load_external_data=False)
    assert _onnxio.data_files(proto) == {"n.onnx.data"}
    offsets = {
        dict((e.key, e.value) for e in t.external_data)["offset"] for t in proto.graph.initializer
    }
    assert len(offsets) == 2  # one file, each tensor at its own place
    onnx.checker.check_model(str(saved))
    np.testing.assert_array_equal(ort.InferenceSession(str(saved)).run(None, {"x": x})[0], want)
    np.testing.assert_array_equal(nbd.load(saved).run(x)["y"], want)
    size = (saved.parent / "n.onnx.data").stat().st_size
    art.save(saved)  # saving over an earlier save starts a fresh data file
    assert (saved.parent / "n.onnx.data").stat().st_size == size
    np.testing.assert_array_equal(nbd.load(saved).run(x)["y"], want)


def test_external_data_behind_a_link_is_refused(tmp_path: Path) -> None:
    path = _save_with_data_at(tmp_path / "elsewhere", "data/w.bin")
    model = tmp_path / "model"
    model.mkdir()
    shutil.copyfile(path, model / "m.onnx")
    (model / "data").symlink_to(tmp_path / "elsewhere" / "data")  # a linked folder
    with pytest.raises(nbd.ArtifactError, match=re.escape(f"through the link '{model / 'data'}'")):
        nbd.load(model / "m.onnx")
    (model / "data").unlink()
    (model / "data").mkdir()
    (model / "data" / "w.bin").symlink_to(tmp_path / "elsewhere" / "data" / "w.bin")
    with pytest.raises(nbd.ArtifactError, match="links are not followed"):
        nbd.load(model / "m.onnx")
    (model / "data" / "w.bin").unlink()
    with pytest.raises(nbd.ArtifactError, match=r"external data file .* is missing"):
        nbd.load(model / "m.onnx")


def test_run_reports_wrong_inputs_by_name() -> None:
    art = nbd.export(onnx_models.affine())
    with pytest.raises(nbd.ExampleError, match=r"missing \['x'\], unknown \['y'\]"):
        art.run({"y": np.ones((1, 3))})
    with pytest.raises(nbd.ExampleError, match="needs float32 values, got <U1"):
        art.run(np.array([["a", "b", "c"]]))
    with pytest.raises(nbd.ExampleError, match="should have 2 dimensions"):
        art.run(np.ones(3, np.float32))
    assert art.run(np.ones((1, 3), np.float64))["y"].dtype == np.float32  # same kind: converted


def test_sequence_outputs_are_lists_even_when_their_tensors_differ_in_shape() -> None:
    art = helpers.model("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[N] x) => (seq(float) s, float[N] y) {
            y = Relu (x)
            twice = Concat <axis = 0> (x, x)
            s = SequenceConstruct (y, twice)
        }""")
    out = art.run(np.array([-1.0, 2.0], np.float32))
    assert isinstance(out["s"], list) and len(out["s"]) == 2
    np.testing.assert_array_equal(out["s"][0], [0.0, 2.0])
    np.testing.assert_array_equal(out["s"][1], [-1.0, 2.0, -1.0, 2.0])
    np.testing.assert_array_equal(out["y"], [0.0, 2.0])
    # Comparing sequences: leaf by leaf within tolerance, and never across lengths.
    near = {**out, "s": [v + 1e-7 for v in out["s"]]}
    assert all(c.ok for c in compare_outputs(near, out, batch_size=2, atol=1e-6, rtol=0.0))
    short = compare_outputs({**out, "s": out["s"][:1]}, out, batch_size=2, atol=1.0, rtol=1.0)
    assert [c.ok for c in short] == [False, True] and short[0].max_abs == float("inf")


_SPLIT_TO_SEQUENCE = """<ir_version: 8, opset_import: ["" : 17]>
    g (float[N, 6] x) => (seq(float[N, 2]) parts, float[N, 6] y) {
        y = Relu (x)
        parts = SplitToSequence <axis = 1> (y)
    }"""


def test_a_split_to_sequence_output_exports_runs_saves_and_optimizes(tmp_path: Path) -> None:
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(2, 6)
    art = nbd.export(onnx.parser.parse_model(_SPLIT_TO_SEQUENCE), x, name="split")
    parts = art.run(x)["parts"]
    assert isinstance(parts, list) and len(parts) == 6
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), np.maximum(x, 0))
    loaded = nbd.load(art.save(tmp_path / "split.onnx"))
    assert [p.shape for p in loaded.run(x)["parts"]] == [(2, 1)] * 6
    parity = nbd.optimize(art).parity
    assert parity is not None and parity.ok


def test_a_sequence_output_is_compared_by_its_tensors_and_refused_by_triton() -> None:
    from nbdeploy.bench import metrics
    from nbdeploy.server import config

    art = nbd.export(onnx.parser.parse_model(_SPLIT_TO_SEQUENCE), name="split")
    x = np.ones((4, 6), np.float32)
    assert len(nbd.compare([art], data=x).rows) == 1  # scores 'y', the tensor output
    with pytest.raises(nbd.ConfigError, match="no tensor output to score"):
        metrics.prediction({"parts": [x]})
    with pytest.raises(nbd.ConfigError, match="'parts' is a sequence, not a tensor"):
        config.build_config("split", art.inputs, art.outputs)


def test_a_zipmap_classifier_answers_a_list_of_dicts_and_compares_with_itself() -> None:
    pytest.importorskip("skl2onnx")
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    x = np.random.default_rng(0).standard_normal((30, 3)).astype(np.float32)
    clf = LogisticRegression().fit(x, (x[:, 0] > 0).astype(np.int64))
    art = nbd.export(to_onnx(clf, x[:1], target_opset=17), name="zipmap")  # ZipMap on
    out = art.run(x[:4])
    probabilities = out["output_probability"]
    assert isinstance(probabilities, list) and all(isinstance(p, dict) for p in probabilities)
    got = np.array([[row[0], row[1]] for row in probabilities])
    np.testing.assert_allclose(got, clf.predict_proba(x[:4]), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out["output_label"], clf.predict(x[:4]))
    parity = art.parity_against(art, reference="itself", atol=0.0, rtol=0.0)
    assert parity.ok and len(parity.checks) == 2


def test_reprs_are_readable() -> None:
    art = nbd.export(onnx_models.affine(), name="affine")
    assert "<Artifact 'affine' onnx" in repr(art) and "x: float32[batch, 3]" in repr(art)
    html = art._repr_html_()
    assert "Artifact &#x27;affine&#x27;" in html and "float32[batch, 3]" in html


def test_errors_pickle_with_their_context() -> None:
    err = nbd.ParityError("boom", output="y", max_abs=1.0, max_rel=2.0, batch_size=3)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is nbd.ParityError and str(back) == "boom" and back.output == "y"
    missing = pickle.loads(pickle.dumps(nbd.MissingDependencyError("torch", "torch", "Export")))
    assert "pip install 'nbdeploy[torch]'" in str(missing) and missing.extra == "torch"
    assert isinstance(missing, ImportError) and isinstance(missing, nbd.NbDeployError)


def _matmul_add() -> nbd.Artifact:
    """y = x @ W + b with a 64x32 weight (every scheme quantizes it), with a value in every
    field of the artifact, so that a step dropping one shows."""
    rng = np.random.default_rng(0)
    proto = onnx.parser.parse_model("""<ir_version: 8, opset_import: ["" : 17]>
        mm (float[batch, 64] x) => (float[batch, 32] y) {
            xw = MatMul (x, W)
            y = Add (xw, b)
        }""")
    proto.graph.initializer.extend(
        numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
        for name, shape in {"W": (64, 32), "b": (32,)}.items()
    )
    art = nbd.export(proto, rng.standard_normal((4, 64)).astype(np.float32), name="mm")
    return dataclasses.replace(
        art,
        parity=art.parity_against(art, reference="itself", atol=0.0, rtol=0.0),
        session_config={"session.intra_op.allow_spinning": "0"},  # harmless, not empty
    )


_NEW_MODEL = {"payload", "lineage", "parity", "report"}
Step = Callable[[nbd.Artifact, Path], nbd.Artifact]
# step -> (how to run it, the fields it means to change)
STEPS: dict[str, tuple[Step, set[str]]] = {
    "optimize": (lambda art, _: nbd.optimize(art), _NEW_MODEL),
    "quantize int8-dynamic": (lambda art, _: nbd.quantize(art, "int8-dynamic"), _NEW_MODEL),
    "quantize int8-weight-symmetric": (
        lambda art, _: nbd.quantize(art, "int8-weight-symmetric"),
        _NEW_MODEL | {"session_config"},
    ),
    "prune": (lambda art, _: nbd.prune(art, 0.5), _NEW_MODEL),
    # A file holds no example and no report (the load is not a step that reports).
    "save and load": (lambda art, tmp: nbd.load(art.save(tmp / "m")), {"payload", "example",
                                                                        "report"}),
    "export the saved file": (
        lambda art, tmp: nbd.export(art.save(tmp / "m"), art.example, name=art.name),
        {"payload", "report"},
    ),
}  # fmt: skip


def _same(a: object, b: object) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):  # example arrays, session entries
        return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    return a == b


@pytest.mark.parametrize("step", list(STEPS))
def test_every_step_keeps_the_fields_it_does_not_mean_to_change(step: str, tmp_path: Path) -> None:
    art = _matmul_add()
    assert all(getattr(art, f.name) for f in dataclasses.fields(art)), "a value in every field"
    before = {f.name: getattr(art, f.name) for f in dataclasses.fields(art)}
    run, changes = STEPS[step]
    after = run(art, tmp_path)
    for f in dataclasses.fields(art):
        assert _same(getattr(art, f.name), before[f.name]), f"{step} changed its input's {f.name}"
        if f.name not in changes:
            assert _same(getattr(after, f.name), before[f.name]), f"{step} dropped {f.name}"
    assert "report" not in changes or after.report is not before["report"]
    if "lineage" in changes:  # one step more
        assert after.lineage.steps[:-1] == art.lineage.steps
        assert after.lineage.steps[-1].kind == step.split()[0]
    if "session_config" in changes:  # entries added, none lost
        assert after.session_config == {**art.session_config, "session.disable_quant_qdq": "1"}
    assert art.example is not None and after.run(art.example)["y"].shape == (4, 32)


def test_an_artifact_cannot_be_changed_after_it_is_made() -> None:
    art = nbd.export(onnx_models.affine(), name="affine")
    for f in dataclasses.fields(art):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(art, f.name, None)
    assert isinstance(art.report, ExportReport) and art.report.exporter == "passthrough"


def test_export_fills_every_field_and_reports_it() -> None:
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Softmax(-1)).eval()
    x = torch.randn(2, 4)
    exports = [nbd.export(model, x, name="soft"), nbd.export(model, x, format="torchscript")]
    for art in exports:
        empty = [f.name for f in dataclasses.fields(art) if getattr(art, f.name) is None]
        assert not empty and not art.session_config
        assert art.example is not None and np.array_equal(art.example["input"], x.numpy())
        report = art.report
        assert isinstance(report, ExportReport) and report.parity == art.parity
        assert report.source == "torch.nn.modules.container.Sequential"
        assert "parity: ok" in str(report) and "Export" in report._repr_html_()
        assert report.to_dict()["parity"]["ok"] is True


def test_a_step_on_onnx_only_says_what_it_needs() -> None:
    torch = pytest.importorskip("torch")
    art = nbd.export(torch.nn.Linear(3, 2), torch.randn(2, 3), format="torchscript", name="ts")
    steps: list[Callable[[nbd.Artifact], object]] = [
        nbd.optimize, nbd.inspect, nbd.show,
        lambda a: nbd.quantize(a, "fp16"), lambda a: nbd.prune(a, 0.5),
    ]  # fmt: skip
    for step in steps:
        with pytest.raises(nbd.ConfigError, match="works on ONNX artifacts; 'ts' is torchscript"):
            step(art)


def _first(outputs: dict[str, np.ndarray]) -> np.ndarray:
    return next(iter(outputs.values()))


BIG_ROWS = (2**31 + 2**24) // 4  # a float32 table just past protobuf's 2 GiB


def _check_big(art: nbd.Artifact, tmp_path: Path, source: Path | None = None) -> None:
    """Run, save, drop and reload a model past 2 GiB (the caller keeps no reference)."""
    if source is not None:  # the artifact does not depend on the user's files
        for file in source.parent.glob("*"):
            file.unlink()
    assert art.parity is None or art.parity.ok
    assert art.onnx_path is not None and art.size_bytes > 2**31
    assert _onnxio.has_external_data(art.onnx)
    ids = np.array([7, BIG_ROWS - 1, 0])
    np.testing.assert_array_equal(_first(art.run(ids))[:, 0], [42.0, -3.0, 0.0])
    path = art.save(tmp_path / "saved" / "big.onnx")
    assert (path.parent / "big.onnx.data").stat().st_size > 2**31
    folder = art.onnx_path.parent
    del art
    gc.collect()
    assert not folder.exists()  # the artifact owned its folder and cleaned it up
    loaded = nbd.load(path)
    np.testing.assert_array_equal(_first(loaded.run(ids))[:, 0], [42.0, -3.0, 0.0])
    with pytest.raises(nbd.ArtifactError, match="larger than 2 GiB"):
        loaded.model_bytes()


@pytest.mark.slow
def test_onnx_file_past_2gib_keeps_external_data(tmp_path: Path) -> None:
    source = onnx_models.big_lookup(tmp_path, BIG_ROWS)
    _check_big(nbd.export(source, np.array([7, 1]), name="big"), tmp_path, source)


@pytest.mark.slow
def test_torch_model_past_2gib_exports_with_external_data(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")

    class Lookup(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("table", torch.zeros(BIG_ROWS, 1))
            self.table[7, 0], self.table[BIG_ROWS - 1, 0] = 42.0, -3.0

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.table[ids]

    _check_big(nbd.export(Lookup(), torch.tensor([7, 1]), name="big"), tmp_path)


def test_loaded_sessions_stay_within_the_runtime_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """A session holds a second copy of its model's weights: past the budget the least
    recently used are dropped (and reloaded when needed), so a notebook holding many
    models does not hold all their sessions too."""
    from nbdeploy import payloads
    from tests.servers import affine

    arts = [affine(float(i)) for i in range(3)]
    monkeypatch.setattr(payloads, "RUNTIME_BUDGET", arts[0].size_bytes * 2)
    x = np.ones((2, 3), np.float32)
    for art in arts:
        art.run({"x": x})
    loaded = [bool(art.payload._runtimes._by_key) for art in arts]
    assert loaded == [False, True, True]  # the first was dropped for the third
    np.testing.assert_allclose(arts[0].run({"x": x})["y"], arts[1].run({"x": x})["y"] - 1)
    assert [bool(art.payload._runtimes._by_key) for art in arts] == [True, True, False]


def test_saving_appends_the_metadata_without_copying_the_model_and_keys_stay_unique(
    tmp_path: Path,
) -> None:
    """Saving writes the model's bytes then a message of metadata alone (protobuf merges
    them): the file is the same model, every nbdeploy key once, however often it is
    loaded and saved again — also for a proto that already carried them."""
    from tests.servers import affine

    art = affine()
    first = art.save(tmp_path / "a.onnx")
    again = nbd.load(first).save(tmp_path / "b.onnx")
    passthrough = nbd.export(onnx.load(again), name="affine").save(tmp_path / "c.onnx")
    for path in (first, again, passthrough):
        model = onnx.load(path)
        onnx.checker.check_model(model)
        keys = [p.key for p in model.metadata_props]
        assert len(keys) == len(set(keys)) and "nbdeploy.lineage" in keys, keys
    assert nbd.load(again).lineage == art.lineage
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(nbd.load(passthrough).run({"x": x})["y"], art.run({"x": x})["y"])


def test_models_from_the_on_disk_size_are_kept_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ON_DISK_BYTES of weights (256 MiB; lowered here) a model read whole from a
    file, or handed over as a proto, moves its weights to a folder of its own: an
    in-memory proto plus sessions built from its bytes held ~4 copies of them."""
    from nbdeploy import _onnxio
    from tests.servers import affine

    path = affine().save(tmp_path / "plain.onnx")  # one file, no external data
    monkeypatch.setattr(_onnxio, "ON_DISK_BYTES", 16)
    loaded = nbd.load(path)
    derived = nbd.export(onnx.load(path), name="affine")
    assert loaded.payload.folder is not None and derived.payload.folder is not None
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(loaded.run({"x": x})["y"], affine().run({"x": x})["y"])
    assert loaded.onnx_path is not None and loaded.onnx_path.is_file()
