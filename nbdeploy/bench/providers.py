"""Devices, as onnxruntime execution providers: which exist here, and where nodes ran."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..artifact import Artifact

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
}


def provider_name(short: str) -> str:
    """``"cuda"`` → ``"CUDAExecutionProvider"`` (full names pass through)."""
    if short in PROVIDERS.values():
        return short
    if short not in PROVIDERS:
        raise ConfigError(f"unknown provider {short!r}; choose {', '.join(PROVIDERS)}.")
    return PROVIDERS[short]


# How to get each provider that a plain onnxruntime wheel lacks.
_HOW_TO_GET = {
    "CUDAExecutionProvider": "install onnxruntime-gpu on a machine with an NVIDIA GPU",
    "TensorrtExecutionProvider": "install onnxruntime-gpu and TensorRT on a machine with "
    "an NVIDIA GPU",
    "OpenVINOExecutionProvider": "install onnxruntime-openvino (Intel CPUs, GPUs, NPUs) in "
    "a virtualenv of its own: it replaces the onnxruntime module, so it cannot sit beside "
    "the plain onnxruntime wheel. nbdeploy's tests and benchmarks build one with "
    "nbdeploy.bench.openvino_venv.prepare() and compare there with "
    "nbdeploy.bench.elsewhere.compare_in",
    "DmlExecutionProvider": "install onnxruntime-directml on Windows",
}


def unavailable_reason(short: str) -> str | None:
    """Why a provider cannot run here, with how to get it, or None when it can."""
    import onnxruntime as ort

    name = provider_name(short)
    if name not in ort.get_available_providers():
        return (
            f"{name} is not in this onnxruntime build ({ort.get_device()}); "
            f"{_HOW_TO_GET.get(name, 'install an onnxruntime build that has it')}."
        )
    return None


def session_for(art: Artifact, short: str, *, profile: bool = False) -> Any:
    """An InferenceSession on one provider (with the CPU as fallback, as onnxruntime does)
    that records where its nodes went (:func:`nbdeploy.bench.placement.from_session`)."""
    import onnxruntime as ort

    from .placement import RECORD_KEY

    options = art.session_options()
    options.add_session_config_entry(RECORD_KEY, "1")  # older builds ignore unknown keys
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tempfile.mkdtemp(prefix="nbdeploy-profile-")) / "p")
    name = provider_name(short)
    chain = [name] if name == PROVIDERS["cpu"] else [name, PROVIDERS["cpu"]]
    # A model kept on disk (past 2 GiB) loads from its file, with its external data.
    source = str(art.onnx_path) if art.onnx_path is not None else art.model_bytes()
    return ort.InferenceSession(source, options, providers=chain)


def onnxruntime_errors() -> tuple[type[Exception], ...]:
    """The exceptions onnxruntime raises (``Fail``, ``InvalidGraph``, ``EPFail``, ...): they
    share no base class but ``Exception``."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    found = (v for v in vars(state).values() if isinstance(v, type) and issubclass(v, Exception))
    return tuple(found)


def kernel_events(
    art: Artifact, short: str, feed: dict[str, Any], *, runs: int = 1
) -> list[dict[str, Any]]:
    """onnxruntime's profile of ``runs`` runs: one event per node execution, with its
    ``dur`` (µs) and ``args`` (``op_name``, ``provider``)."""
    session = session_for(art, short, profile=True)
    for _ in range(runs):
        session.run(None, feed)
    path = Path(session.end_profiling())
    try:
        events = json.loads(path.read_text())
    finally:
        path.unlink(missing_ok=True)
        path.parent.rmdir()
    return [
        event
        for event in events
        if event.get("cat") == "Node"
        and "provider" in event.get("args", {})
        and event.get("name", "").endswith("_kernel_time")
    ]
