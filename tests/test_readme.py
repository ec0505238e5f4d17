"""README's "In a notebook" block runs as written, on a small digits-shaped model (the
push goes to the test suite's real Triton where it runs, else into a folder)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.slow
README = Path(__file__).parents[1] / "README.md"


def _notebook_block() -> str:
    section = README.read_text().split("## In a notebook", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "README has no python block under 'In a notebook'"
    return match.group(1)


def _namespace() -> dict[str, Any]:
    """What the block assumes a notebook already has: a model, its data and inputs."""
    torch = pytest.importorskip("torch")
    import tritonclient.http as httpclient

    import nbdeploy as nbd

    rng = np.random.default_rng(0)
    x_val = rng.standard_normal((64, 1, 8, 8)).astype(np.float32)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(256, 10),
    ).eval()  # fmt: skip
    with torch.no_grad():
        y_val = model(torch.from_numpy(x_val)).argmax(1).numpy()
    item = httpclient.InferInput("input", [4, 1, 8, 8], "FP32")
    item.set_data_from_numpy(x_val[:4])
    example = torch.from_numpy(x_val[:8])
    better = nbd.quantize(nbd.export(model, example, name="digits"), "fp16")
    return {"model": model, "example": example, "x": x_val[:4], "x_cal": x_val[:32],
            "x_val": x_val, "y_val": y_val, "inputs": [item], "q8_better": better}  # fmt: skip


# The wheel's Triton has only the Python backend: push falls back to it, and says so.
@pytest.mark.filterwarnings("ignore:Triton at .* has no onnxruntime backend:UserWarning")
def test_the_readme_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    import nbdeploy as nbd

    monkeypatch.chdir(tmp_path)  # art.save("digits.onnx"), .save("k8s/")
    monkeypatch.setenv("NBDEPLOY_REPOSITORY", str(tmp_path / "repository"))
    code = _notebook_block()
    try:
        endpoint = request.getfixturevalue("triton")
        triton, shared = endpoint.http, endpoint.repository  # the folder Triton reads
    except pytest.skip.Exception:
        triton = str(tmp_path / "triton-repository") + "/"  # a repository folder instead
        shared = tmp_path / "triton-repository"
    code = code.replace('"triton-host:8000"', repr(triton))
    code = code.replace('"/mnt/models"', repr(str(shared)))
    namespace = _namespace()
    try:
        exec(compile(code, str(README), "exec"), namespace)
    finally:
        nbd.server.stop(tmp_path / "repository")
    assert (tmp_path / "digits.onnx").is_file() and (tmp_path / "k8s").is_dir()
    assert namespace["v2"].version == 2
