from __future__ import annotations

import subprocess
import sys

import nbdeploy as nbd

CURATED = {
    # the flow
    "export", "load", "inspect", "show", "diff", "optimize", "quantize", "prune", "compare",
    "serve", "deployments", "server", "push", "manifests", "studio",
    # the objects it returns
    "Artifact", "TensorSpec", "Lineage", "Parity", "GraphSummary", "GraphDiff", "Comparison",
    "Deployment", "PushResult", "Manifests",
    # the error tree
    "NbDeployError", "ArtifactError", "ConfigError", "ExampleError", "ExportError",
    "MissingDependencyError", "OptimizationError", "ParityError", "PushError",
    "UnsupportedModelError",
    "__version__",
}  # fmt: skip


def test_public_api_is_the_curated_list() -> None:
    assert set(nbd.__all__) == CURATED
    for name in nbd.__all__:
        assert getattr(nbd, name) is not None, name


def test_every_public_error_derives_from_the_root() -> None:
    for name in nbd.__all__:
        obj = getattr(nbd, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, nbd.NbDeployError), name


def test_import_does_not_load_heavy_frameworks() -> None:
    code = (
        "import sys, nbdeploy\n"
        "heavy = [m for m in ('torch', 'sklearn', 'tritonclient', 'IPython', 'jupyter_server',"
        " 'ipywidgets', 'onnxruntime', 'onnx', 'matplotlib') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_unsupported_model_says_what_is_accepted() -> None:
    import pytest

    with pytest.raises(nbd.UnsupportedModelError, match=r"pass a torch\.nn\.Module"):
        nbd.export(object())
    with pytest.raises(nbd.ConfigError, match="unknown format"):
        nbd.export("m.onnx", format="tf")  # type: ignore[arg-type]
    with pytest.raises(nbd.ConfigError, match="is not usable"):
        nbd.export("m.onnx", name="../evil")


def test_public_functions_are_not_shadowed_by_submodules() -> None:
    # Importing a subpackage sets it as an attribute of the package; no subpackage may
    # share a name with a public function (nbd.export, nbd.quantize, ...). Namespaces
    # meant as modules (nbd.server) are the exception.
    code = (
        "import importlib, pkgutil, nbdeploy\n"
        "for m in pkgutil.iter_modules(nbdeploy.__path__):\n"
        "    importlib.import_module('nbdeploy.' + m.name)\n"
        "bad = [n for n in nbdeploy.__all__ if n not in nbdeploy._SUBMODULES\n"
        "       and type(getattr(nbdeploy, n)).__name__ == 'module']\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
