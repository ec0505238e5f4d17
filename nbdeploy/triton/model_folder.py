"""One model version in Triton's repository layout, for any Triton (or our server)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Literal

from ..artifact import Artifact
from ..errors import ConfigError
from ..server import config as cfg

__all__ = ["write_version"]

Backend = Literal["onnxruntime", "python"]


def write_version(
    repository: Path,
    art: Artifact,
    *,
    name: str,
    version: int = 1,
    backend: Backend = "onnxruntime",
    max_batch_size: int | None = None,
    instances: int = 1,
    dynamic_batching: bool = True,
) -> Path:
    """Write ``<repository>/<name>/<version>/`` and ``config.pbtxt``; returns the model folder.

    Args:
        repository: The model repository folder.
        art: An ONNX artifact.
        name: Model name.
        version: Version folder to write.
        backend: ``"onnxruntime"`` (Triton's native ONNX backend) or ``"python"`` (a
            Python-backend model running onnxruntime; see :mod:`.python_model`).
        max_batch_size: As in :func:`nbdeploy.server.config.build_config`.
        instances: Model instances.
        dynamic_batching: Merge concurrent requests.
    """
    if art.format != "onnx":
        raise ConfigError("only ONNX artifacts can be written as onnxruntime/python models")
    folder = repository / name
    version_folder = folder / str(version)
    art.save(version_folder / "model.onnx")
    config = cfg.build_config(
        name, art.inputs, art.outputs,
        platform="onnxruntime_onnx", backend="python" if backend == "python" else "",
        max_batch_size=max_batch_size, instances=instances, dynamic_batching=dynamic_batching,
        parameters=art.session_config,
    )  # fmt: skip
    if backend == "python":
        shutil.copyfile(Path(__file__).with_name("python_model.py"), version_folder / "model.py")
    (folder / "config.pbtxt").write_text(cfg.to_text(config))
    return folder
