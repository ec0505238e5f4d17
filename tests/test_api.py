from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import nbdeploy as nbd

CURATED = {
    # the flow
    "export", "load", "inspect", "show", "diff", "optimize", "quantize", "prune", "compare",
    "activations",
    "serve", "deployments", "server", "push", "manifests", "studio", "kubeflow",
    # the objects it returns
    "Artifact", "TensorSpec", "Lineage", "Parity", "GraphSummary", "GraphDiff", "Comparison",
    "ActivationReport",
    "Deployment", "PushResult", "Manifests",
    # the error tree
    "NbDeployError", "ArtifactError", "ConfigError", "ExampleError", "ExportError",
    "MissingDependencyError", "OptimizationError", "ParityError", "PushError",
    "UnsupportedModelError", "ServerError", "ProtocolError", "DamagedFileError",
    "TritonUnavailableError", "VirtualenvError",
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


def test_every_error_class_lives_in_the_one_tree() -> None:
    """No module but errors.py defines an exception: the tree drawn there is all of them."""
    import ast
    from pathlib import Path

    package = Path(nbd.__file__).parent
    strays = [
        f"{path.relative_to(package)}:{node.name}"
        for path in package.rglob("*.py")
        if path.name != "errors.py"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef)
        and any(getattr(b, "id", getattr(b, "attr", "")).endswith(("Error", "Exception"))
                for b in node.bases)
    ]  # fmt: skip
    assert strays == []
    tree = (package / "errors.py").read_text().split('"""')[1]
    for name in nbd.__all__:
        obj = getattr(nbd, name)
        if isinstance(obj, type) and issubclass(obj, Exception) and obj is not nbd.NbDeployError:
            assert f"── {name}" in tree, f"{name} is not drawn in errors.py's tree"


def test_errors_keep_status_and_context_when_pickled() -> None:
    import pickle

    err = nbd.ServerError("refused", status=409, model="digits")
    back = pickle.loads(pickle.dumps(err))
    assert (type(back), str(back), back.status, back.context) == (
        nbd.ServerError, "refused", 409, {"model": "digits"})  # fmt: skip
    assert back.model == "digits"
    parity = pickle.loads(pickle.dumps(nbd.ParityError("off", output="y", max_abs=1.0,
                                                       max_rel=0.5, batch_size=2)))  # fmt: skip
    assert (parity.output, parity.max_abs, parity.batch_size, parity.status) == ("y", 1.0, 2, None)
    assert nbd.ProtocolError("bad").status == 400 and isinstance(nbd.ProtocolError("x"),
                                                                 nbd.ServerError)  # fmt: skip


# onnx is a core dependency: the steps may load it, `import nbdeploy` may not.
HEAVY = ("torch", "sklearn", "tritonclient", "grpc", "starlette", "uvicorn", "IPython",
         "jupyter_server", "ipywidgets", "onnxruntime", "matplotlib", "onnx", "tensorflow",
         "keras", "tf2onnx", "kfp", "tensorflow_serving",
         "kubernetes")  # fmt: skip
# Triton's own package is where tritonclient belongs (DESIGN.md's layers).
LOADS = {"push": {"tritonclient", "grpc"}, "PushResult": {"tritonclient", "grpc"}}


def _loaded_after(statement: str, blocked: tuple[str, ...] = ()) -> list[str]:
    """Heavy modules in sys.modules after ``statement`` runs in a fresh interpreter, with
    ``blocked`` packages made unimportable (as if not installed)."""
    code = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        f"import nbdeploy as nbd\n{statement}\n"
        f"print(','.join(m for m in {HEAVY!r} if sys.modules.get(m)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_import_does_not_load_heavy_frameworks() -> None:
    assert _loaded_after("") == []


@pytest.mark.parametrize("name", sorted(CURATED - {"__version__"}))
def test_reaching_a_public_name_loads_nothing_it_does_not_need(name: str) -> None:
    assert set(_loaded_after(f"nbd.{name}")) <= {"onnx", *LOADS.get(name, ())}


def test_the_notebook_side_of_the_server_works_without_its_packages(tmp_path: Path) -> None:
    """nbd.server.status / nbd.deployments with tritonclient, grpc, starlette and uvicorn
    not installed (the 'lab' extra does not bring them)."""
    statement = (
        f"assert not nbd.server.status({str(tmp_path)!r}).running\n"
        f"assert nbd.deployments({str(tmp_path)!r}) == []"
    )
    blocked = ("tritonclient", "grpc", "starlette", "uvicorn")
    assert set(_loaded_after(statement, blocked)) <= {"onnx"}


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


def test_serving_without_the_serve_extra_says_what_to_install() -> None:
    code = (
        "import sys\nsys.modules['tritonclient'] = None\nimport nbdeploy as nbd\n"
        "try:\n    nbd.serve(None)\nexcept nbd.MissingDependencyError as err:\n    print(err)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'nbdeploy[serve]'" in out.stdout
