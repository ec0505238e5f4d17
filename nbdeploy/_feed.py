"""Turning what a user passes as model inputs into a checked ``{name: ndarray}`` feed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import ExampleError
from .types import TensorSpec

# A value of one kind may be converted to another dtype of the same kind without surprise.
_KIND_GROUPS = {
    "f": "float",
    "i": "int",
    "u": "int",
    "b": "bool",
    "U": "str",
    "S": "str",
    "O": "str",
}


def as_feed(inputs: Any, specs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    """Match ``inputs`` to ``specs`` and return arrays of the dtypes the model expects.

    Args:
        inputs: A dict by input name, a tuple/list in input order, or one array for a
            single-input model. Torch tensors are accepted too.
        specs: The model's input specs.

    Raises:
        ExampleError: A missing or unknown input, a dtype of the wrong kind, or a shape
            that contradicts a fixed dimension; the message names the input.
    """
    names = [spec.name for spec in specs]
    if isinstance(inputs, Mapping):
        unknown = sorted(set(inputs) - set(names))
        missing = [name for name in names if name not in inputs]
        if unknown or missing:
            raise ExampleError(
                f"inputs do not match the model's: missing {missing}, unknown {unknown}. "
                f"The model takes {names}."
            )
        values = [inputs[name] for name in names]
    elif isinstance(inputs, tuple | list) and len(specs) > 1:
        if len(inputs) != len(specs):
            raise ExampleError(f"the model takes {len(specs)} inputs {names}, got {len(inputs)}.")
        values = list(inputs)
    else:
        if len(specs) != 1:
            raise ExampleError(f"the model takes {len(specs)} inputs {names}; pass a dict by name.")
        values = [inputs]
    return {spec.name: _as_array(value, spec) for spec, value in zip(specs, values, strict=True)}


def _as_array(value: Any, spec: TensorSpec) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(
        value, "cpu"
    ):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if spec.dtype != "unknown":
        array = _cast(array, spec)
    if spec.shape and array.ndim != len(spec.shape):
        raise ExampleError(
            f"input '{spec.name}' should have {len(spec.shape)} dimensions {spec.shape_text}, "
            f"got shape {array.shape}."
        )
    for axis, (want, got) in enumerate(zip(spec.shape, array.shape, strict=False)):
        if isinstance(want, int) and want != got:
            raise ExampleError(
                f"input '{spec.name}' has size {got} on axis {axis}, the model needs {want} "
                f"(shape {spec.shape_text})."
            )
    return array


def _cast(array: np.ndarray, spec: TensorSpec) -> np.ndarray:
    target = np.dtype(spec.dtype)
    if array.dtype == target:
        return array
    have, want = _KIND_GROUPS.get(array.dtype.kind), _KIND_GROUPS.get(target.kind)
    if have != want and not (have == "int" and want == "float"):
        raise ExampleError(
            f"input '{spec.name}' needs {spec.dtype} values, got {array.dtype}. "
            f"Convert it, e.g. x.astype('{spec.dtype}')."
        )
    return array.astype(target)


def batch_size(feed: Mapping[str, np.ndarray]) -> int:
    """Leading dimension of the first input with one (1 for scalars)."""
    for array in feed.values():
        if array.ndim:
            return int(array.shape[0])
    return 1


def random_feed(
    specs: Sequence[TensorSpec], *, batch: int = 2, dim: int = 3, seed: int = 0
) -> dict[str, np.ndarray]:
    """Inputs of the right dtype and rank when no example is at hand.

    The leading symbolic dimension gets ``batch``, other symbolic ones ``dim``. Integers
    are kept to {0, 1}: any index into an embedding or a category table accepts them.
    """
    rng = np.random.default_rng(seed)
    feed = {}
    for spec in specs:
        shape = tuple(
            d if isinstance(d, int) else (batch if axis == 0 else dim)
            for axis, d in enumerate(spec.shape)
        )
        kind = np.dtype(spec.dtype).kind if spec.dtype != "unknown" else "f"
        if kind == "f":
            feed[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        elif kind in "iu":
            feed[spec.name] = rng.integers(0, 2, shape).astype(spec.dtype)
        elif kind == "b":
            feed[spec.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            feed[spec.name] = np.full(shape, "a", dtype=object)
    return feed


SAVED_EXAMPLE_BYTES = 4 * 2**20  # examples up to this size travel inside a saved model


def pack(feed: Mapping[str, np.ndarray]) -> str | None:
    """``feed`` as text for a model file's metadata (base64 of a compressed ``.npz``), or
    ``None`` when it holds more than ``SAVED_EXAMPLE_BYTES`` or objects (strings)."""
    import base64
    import io
    import zipfile

    arrays = {name: np.asarray(value) for name, value in feed.items()}
    if sum(a.nbytes for a in arrays.values()) > SAVED_EXAMPLE_BYTES:
        return None
    if any(a.dtype.kind == "O" for a in arrays.values()):
        return None
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:  # an .npz
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def unpack(text: str) -> dict[str, np.ndarray] | None:
    """The feed :func:`pack` wrote, in its order; ``None`` if the text is not one."""
    import base64
    import binascii
    import io
    import zipfile

    try:
        with np.load(io.BytesIO(base64.b64decode(text)), allow_pickle=False) as saved:
            return {name: saved[name] for name in saved.files}
    except (ValueError, OSError, binascii.Error, zipfile.BadZipFile):
        return None


def v2_json_request(
    example: Mapping[str, Any], specs: Sequence[TensorSpec], max_values: int = 64
) -> dict[str, Any]:
    """A KServe V2 JSON inference request for the example's first rows: as many rows as
    fit in ``max_values`` values per input (at least one), strings as BYTES, and zeros
    of the right shape for an input the example lacks. What a curl line or a "Try it"
    button sends."""
    from .types import BY_NUMPY

    first = {s.name: np.asarray(example[s.name]) for s in specs if s.name in example}
    batched = [a for a in first.values() if a.ndim]
    per_row = max((a[:1].size for a in batched), default=1) or 1
    rows = max(1, min(min((len(a) for a in batched), default=1), max_values // per_row))
    tensors = []
    for spec in specs:
        array = first.get(spec.name)
        if array is None:
            shape = [1 if not isinstance(d, int) else d for d in spec.shape]
            array = np.zeros(shape, dtype=object if spec.dtype == "object" else spec.dtype)
        array = array[:rows] if array.ndim else array
        datatype = BY_NUMPY[spec.dtype].v2 if spec.dtype in BY_NUMPY else "BYTES"
        tensors.append({"name": spec.name, "shape": list(array.shape), "datatype": datatype,
                        "data": [_json_value(v) for v in array.reshape(-1).tolist()]})  # fmt: skip
    return {"inputs": tensors}


def _json_value(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
