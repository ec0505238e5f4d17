"""One model version in Triton's repository layout — its config and its files — shared by
pushes through Triton's repository API, repositories written to disk, and our server."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Literal

from ..artifact import Artifact
from ..errors import ConfigError
from ..server import config as cfg

__all__ = ["Backend", "triton_config", "version_files", "write_version"]

Backend = Literal["onnxruntime", "python", "pytorch", "tensorflow"]
PYTHON_MODEL = Path(__file__).with_name("python_model.py")
# Triton's backends for each artifact format, the native one first.
BACKENDS: dict[str, tuple[Backend, ...]] = {
    "onnx": ("onnxruntime", "python"),
    "torchscript": ("pytorch",),
    "savedmodel": ("tensorflow",),
}
PLATFORMS = {
    "onnxruntime": "onnxruntime_onnx",
    "pytorch": "pytorch_libtorch",
    "tensorflow": "tensorflow_savedmodel",
}
# The file (a folder, for a SavedModel) each backend reads in a version folder.
MODEL_FILES = {"pytorch": "model.pt", "tensorflow": "model.savedmodel"}


def default_backend(art: Artifact) -> Backend:
    """Triton's native backend for the artifact's format."""
    return BACKENDS[art.format][0]


def triton_config(
    art: Artifact,
    name: str,
    backend: Backend,
    *,
    max_batch_size: int | None = None,
    instances: int = 1,
    dynamic_batching: bool = True,
    gpu: bool = False,
    tensorrt: bool = False,
) -> cfg.ModelConfig:
    """The ``config.pbtxt`` of an artifact on a Triton backend.

    Args:
        art: The artifact (its signature gives inputs, outputs and dims).
        name: Model name.
        backend: ``"onnxruntime"`` (platform ``onnxruntime_onnx``), ``"python"`` (a
            Python-backend model running onnxruntime), ``"pytorch"`` (TorchScript on
            ``pytorch_libtorch``) or ``"tensorflow"`` (a SavedModel on
            ``tensorflow_savedmodel``).
        max_batch_size: Largest batch (default: 128 when the model has a batch dimension).
        instances: Model instances per device.
        dynamic_batching: Merge concurrent requests into one run.
        gpu: Put the instances on the GPU (``KIND_GPU``).
        tensorrt: Ask the onnxruntime backend for its TensorRT execution accelerator
            (FP16); needs ``gpu``.
    """
    expected = BACKENDS[art.format]
    if backend not in expected:
        raise ConfigError(
            f"a {art.format} artifact cannot use backend {backend!r}; use one of {expected}"
        )
    if tensorrt and not (gpu and backend == "onnxruntime"):
        raise ConfigError("tensorrt=True needs gpu=True and the onnxruntime backend")
    platform = PLATFORMS.get(backend, "")
    config = cfg.build_config(
        name, art.inputs, art.outputs, platform=platform,
        backend="python" if backend == "python" else "", max_batch_size=max_batch_size,
        instances=instances, dynamic_batching=dynamic_batching, parameters=art.session_config,
    )  # fmt: skip
    if gpu:
        for group in config.instance_group:
            group.kind = cfg.KIND_GPU
    if tensorrt:
        accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add()
        accelerator.name = "tensorrt"
        accelerator.parameters["precision_mode"] = "FP16"
    return config


def version_files(art: Artifact, version: int, backend: Backend) -> dict[str, bytes]:
    """The files of one version, by path inside the model folder (``"2/model.onnx"``,
    external data and ``model.py`` included), as Triton's ``file:`` overrides want them."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / str(version)
        art.save(folder / MODEL_FILES.get(backend, "model.onnx"))
        if backend == "python":
            shutil.copyfile(PYTHON_MODEL, folder / "model.py")
        return {
            f"{version}/{path.relative_to(folder).as_posix()}": path.read_bytes()
            for path in sorted(folder.rglob("*"))
            if path.is_file()
        }


def write_version(
    repository: str | Path,
    art: Artifact,
    *,
    name: str,
    version: int = 1,
    backend: Backend | None = None,
    **options: bool | int | None,
) -> Path:
    """Write ``<repository>/<name>/<version>/`` and ``config.pbtxt``; returns the model folder.

    Args:
        repository: The model repository folder.
        art: The artifact.
        name: Model name.
        version: Version folder to write.
        backend: As in :func:`triton_config` (default: native for the format).
        **options: Passed to :func:`triton_config` (``max_batch_size``, ``instances``, ...).
    """
    folder = Path(repository) / name
    config = triton_config(art, name, backend or default_backend(art), **options)  # type: ignore[arg-type]
    for relative, data in version_files(art, version, backend or default_backend(art)).items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (folder / "config.pbtxt").write_text(cfg.to_text(config))
    return folder
