"""TorchScript archives: load, run and save them, metadata included, with torch imported lazily.

This sits below :mod:`nbdeploy.artifact` (and the exporters build on it), so an artifact
reads and writes its TorchScript payload without reaching up into the exporters.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import numpy as np

from ._deps import require
from .errors import ArtifactError
from .types import Outputs

if TYPE_CHECKING:
    import torch
    from torch.jit import ScriptModule

Feed: TypeAlias = Mapping[str, np.ndarray]


def load_module(data: bytes) -> ScriptModule:
    """A TorchScript module, in eval mode on the CPU, from archive bytes."""
    torch = require("torch", extra="torch", feature="Running a TorchScript artifact")
    module: ScriptModule = torch.jit.load(io.BytesIO(data), map_location="cpu")
    module.eval()
    return module


def tensors(
    feed: Feed, *, keyword: bool
) -> tuple[tuple[torch.Tensor, ...], dict[str, torch.Tensor]]:
    """A feed as the positional or keyword tensors a module is called with."""
    import torch

    by_name = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in feed.items()}
    return ((), by_name) if keyword else (tuple(by_name.values()), {})


def run(module: ScriptModule, feed: Feed, *, keyword: bool) -> Outputs:
    """Run a loaded module on a feed; outputs named as :func:`flatten_outputs` names them."""
    import torch

    args, kwargs = tensors(feed, keyword=keyword)
    with torch.no_grad():
        return flatten_outputs(module(*args, **kwargs))


def flatten_outputs(result: object) -> Outputs:
    """Model outputs as ``{name: array}``: dict keys and tuple positions become names."""
    from torch.utils import _pytree

    leaves, _ = _pytree.tree_flatten_with_path(result)
    if len(leaves) == 1 and not leaves[0][0]:
        return {"output": _leaf(leaves[0][1])}
    return {_path_name(path): _leaf(leaf) for path, leaf in leaves}


def _path_name(path: Sequence[object]) -> str:
    parts = [str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path]
    name = "_".join(parts)
    return name if not name[:1].isdigit() else f"output_{name}"


def _leaf(value: object) -> np.ndarray:
    import torch

    if isinstance(value, torch.Tensor):
        return np.asarray(value.detach().cpu().numpy())
    return np.asarray(value)


def save(module: ScriptModule, path: Path, extra: Mapping[str, str]) -> None:
    """Write a loaded module to ``path`` with ``extra`` files (our metadata) inside, in one
    ``torch.jit.save``."""
    import torch

    torch.jit.save(module, str(path), _extra_files=dict(extra))


def load(path: Path, extra_name: str) -> tuple[bytes, ScriptModule, str]:
    """A TorchScript file's bytes, its module (loaded, in eval mode) and one extra file's
    text (empty when it has none).

    Raises:
        ArtifactError: ``path`` is not TorchScript; the message says what it is instead
            (a state_dict or a module pickled by ``torch.save``) and how to export it.
    """
    torch = require("torch", extra="torch", feature="Loading a TorchScript artifact")
    data = path.read_bytes()
    extra = {extra_name: ""}
    try:
        module: ScriptModule = torch.jit.load(
            io.BytesIO(data), map_location="cpu", _extra_files=extra
        )
    except RuntimeError as err:  # torch says only that the archive lacks constants.pkl
        raise ArtifactError(_not_torchscript(path)) from err
    module.eval()
    value = extra[extra_name]
    return data, module, value.decode() if isinstance(value, bytes) else value


_HINT = (
    "export the model in memory with nbd.export(model, example=...), or save it as "
    "TorchScript with torch.jit.script(model).save(path) or torch.jit.trace(model, "
    "example).save(path)."
)


def _not_torchscript(path: Path) -> str:
    """Why ``path`` is not a TorchScript file, and what to do instead."""
    content = _torch_save_content(path)
    if content == "state_dict":
        return (
            f"'{path}' holds a state_dict saved with torch.save: weights without the model's "
            f"code, not TorchScript. Load it into your model (model.load_state_dict("
            f"torch.load(path))), then {_HINT}"
        )
    if content is not None:
        return (
            f"'{path}' holds {content} pickled with torch.save, not TorchScript. To use it, {_HINT}"
        )
    return f"'{path}' is not a TorchScript file. To use the model, {_HINT}"


def _torch_save_content(path: Path) -> str | None:
    """What ``torch.save`` wrote to ``path``: ``"state_dict"``, a description of another
    object, or ``None`` when torch.save did not write it."""
    if not _written_by_torch_save(path):
        return None
    import torch

    try:  # weights_only unpickles tensors and containers, never code
        value = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError:  # it refused a class: a whole module, or the like
        return "a Python object (such as a whole nn.Module)"
    except Exception:  # a damaged archive: say no more than what wrote it
        return "data"
    return "state_dict" if isinstance(value, Mapping) else f"a {type(value).__name__}"


def _written_by_torch_save(path: Path) -> bool:
    """A zip archive with a pickle and no TorchScript constants, as torch.save writes."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/data.pkl") for n in names) and not any(
        n.endswith("/constants.pkl") for n in names
    )
