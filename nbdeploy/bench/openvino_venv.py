"""onnxruntime's OpenVINO execution provider, in a virtualenv of its own.

The ``onnxruntime-openvino`` wheel ships the same ``onnxruntime`` package folder as the
plain ``onnxruntime`` wheel (with OpenVINO's libraries inside it), so the two cannot share
an environment: whichever pip installs last overwrites the other's files. This builds a
small venv, once, in ``$NBDEPLOY_CACHE/openvino/venv`` (default
``~/.cache/nbdeploy/openvino/venv``) with ``onnxruntime-openvino`` and nbdeploy's other
runtime dependencies, and not the plain ``onnxruntime``. The wheels are downloaded into
``$NBDEPLOY_CACHE/openvino/wheels`` and installed from there, so a rebuild needs no
network (pip's own HTTP cache keeps nothing when the index says not to). nbdeploy itself
is not installed there but put on the path of each run (:mod:`nbdeploy.bench.elsewhere`),
so a git worktree's code is what runs. No torch or TensorFlow: artifacts cross over as
files.

    >>> from nbdeploy.bench import elsewhere, openvino_venv
    >>> python = openvino_venv.prepare()                      # doctest: +SKIP
    >>> elsewhere.compare_in(python, [art, q8], providers=["cpu", "openvino"])  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from ..errors import VirtualenvError

__all__ = ["PACKAGES", "prepare", "unavailable_reason"]

ONNXRUNTIME_OPENVINO = "onnxruntime-openvino==1.24.1"
# nbdeploy's runtime dependencies (pyproject.toml) but onnxruntime, which the wheel above
# replaces; tests/bench/test_openvino.py checks that the two lists agree.
RUNTIME = ("numpy>=1.24", "onnx>=1.17", "onnx-ir>=0.1.12", "onnxscript>=0.5", "tqdm>=4.66",
           "httpx>=0.27")  # fmt: skip
PACKAGES = (ONNXRUNTIME_OPENVINO, *RUNTIME)
# Runs in the new venv: the providers it has, and whether the plain wheel crept in.
_CHECK = (
    "import json, importlib.metadata as m, onnxruntime as ort\n"
    "names = {d.metadata['Name'].lower() for d in m.distributions()}\n"
    "print(json.dumps({'providers': ort.get_available_providers(), "
    "'plain': 'onnxruntime' in names}))"
)


def cache_folder() -> Path:
    """``$NBDEPLOY_CACHE/openvino`` (default ``~/.cache/nbdeploy/openvino``)."""
    root = Path(os.environ.get("NBDEPLOY_CACHE", "~/.cache/nbdeploy")).expanduser()
    return root / "openvino"


def prepare() -> Path:
    """Build the venv once (again when :data:`PACKAGES` change); return its ``python``.

    Raises:
        VirtualenvError: Not Linux or Windows on x86-64 (the wheel's platforms), pip
            failed, or the venv lacks the OpenVINO provider or holds the plain wheel.
    """
    venv = cache_folder() / "venv"
    python = venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    stamp = venv / ".nbdeploy-packages"
    wanted = "\n".join(PACKAGES)
    if stamp.is_file() and stamp.read_text() == wanted and python.exists():
        return python
    if platform.machine().lower() not in {"x86_64", "amd64"}:
        raise VirtualenvError(
            f"onnxruntime-openvino has wheels for x86-64 only, not {platform.machine()}"
        )
    _run([sys.executable, "-m", "venv", "--clear", str(venv)])
    _install(python, cache_folder() / "wheels")
    _check(python)
    stamp.write_text(wanted)
    return python


def unavailable_reason() -> str | None:
    """Why the OpenVINO venv cannot be had here, or ``None`` when :func:`prepare` works."""
    try:
        prepare()
    except (VirtualenvError, OSError) as err:
        return f"no onnxruntime-openvino virtualenv: {err}"
    return None


def _install(python: Path, wheels: Path) -> None:
    """Install :data:`PACKAGES` from the wheels folder, downloading into it first what it
    lacks (pip download keeps the files it finds there)."""
    pip = [str(python), "-m", "pip", "-q", "--disable-pip-version-check"]
    offline = [*pip, "install", "--no-index", "--find-links", str(wheels), *PACKAGES]
    if wheels.is_dir() and _run(offline, check=False) is not None:
        return
    _run([*pip, "download", "--dest", str(wheels), *PACKAGES])
    _run(offline)


def _check(python: Path) -> None:
    found = json.loads(_run([str(python), "-I", "-c", _CHECK]) or "{}")
    if found["plain"] or "OpenVINOExecutionProvider" not in found["providers"]:
        raise VirtualenvError(
            f"the venv at {python.parent.parent} is not what nbdeploy built it to be: "
            f"providers {found['providers']}, plain onnxruntime installed: {found['plain']}"
        )


def _run(command: list[str], *, check: bool = True) -> str | None:
    """Run a build step; its stdout, or ``None`` when it failed and ``check`` is off."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode and check:
        raise VirtualenvError(f"{' '.join(command[:5])} failed:\n{done.stderr[-2000:]}")
    return None if done.returncode else done.stdout
