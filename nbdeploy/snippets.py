"""The calls the copy buttons copy, in the sidebar and on ``%deploy``'s card alike, each
runnable as pasted: a tritonclient HTTP call whose inputs come from the example the
version was deployed with (its first row written out when small, else read from the
server), or zeros of the model's input shapes when no example is kept; and a curl line.
Pure functions of the server's URL, the model's metadata and the stored example request
(a KServe V2 JSON body)."""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from .types import BY_V2

__all__ = ["INLINE_VALUES", "curl", "first_row", "image_layout", "python", "zeros_request"]

INLINE_VALUES = 64  # an input with more values than this is not written into a snippet
FLOAT_TYPES = ("FP16", "FP32", "FP64")
DEFAULT_SIDE = 224  # an image input of any size is fed this many pixels a side

Tensor = Mapping[str, Any]  # {"name", "datatype", "shape", "data"?}


def python(
    http_url: str,
    name: str,
    version: int,
    inputs: Sequence[Tensor],
    example: Mapping[str, Any] | None,
) -> str:
    """A whole tritonclient HTTP call to ``name`` version ``version``: builds each input,
    runs infer, prints every output. Names of its own (prefixed by the model's), so
    pasting it into a notebook leaves the user's ``x`` alone.

    Args:
        http_url: The server's base URL.
        name: The model.
        version: The version the call names.
        inputs: The model's inputs as its metadata lists them (name, datatype, shape).
        example: The version's stored example request, if it has one.
    """
    prefix = _identifier(name)
    stored = {t["name"]: t for t in (example or {}).get("inputs", [])}
    lines = ["import numpy as np", "import tritonclient.http as httpclient", ""]
    if any(not _small(stored[s["name"]]) for s in inputs if s["name"] in stored):
        lines[:0] = ["import json", "import urllib.request"]
        lines += [
            f"{prefix}_example = json.load(urllib.request.urlopen(",
            f'    "{extra_url(http_url, name, version, "example")}"))',
            f'{prefix}_stored = {{t["name"]: t for t in {prefix}_example["inputs"]}}',
        ]
    lines += [
        f'{prefix}_client = httpclient.InferenceServerClient("{_host(http_url)}")',
        f"{prefix}_inputs = []",
    ]
    for spec in inputs:
        variable = f"{prefix}_{_identifier(spec['name'])}"
        dtype = _dtype(spec["datatype"])
        lines.append(
            f"# your data instead: a {BY_V2[spec['datatype']].numpy} array of shape "
            f"{_shape_text(spec['shape'])}"
        )
        tensor = stored.get(spec["name"])
        if tensor is None:
            lines.append(f"{variable} = np.zeros({_concrete(spec['shape'])}, dtype={dtype})")
        elif _small(tensor):
            row = first_row(tensor)
            lines.append(f"{variable} = np.array({_nested(row)!r}, dtype={dtype})")
        else:
            stored_tensor = f'{prefix}_stored["{spec["name"]}"]'
            lines.append(
                f'{variable} = np.array({stored_tensor}["data"], '
                f'dtype={dtype}).reshape({stored_tensor}["shape"])'
            )
        lines += [
            f'{prefix}_item = httpclient.InferInput("{spec["name"]}", list({variable}.shape), '
            f'"{spec["datatype"]}")',
            f"{prefix}_item.set_data_from_numpy({variable})",
            f"{prefix}_inputs.append({prefix}_item)",
        ]
    lines += [
        f'{prefix}_result = {prefix}_client.infer("{name}", {prefix}_inputs, '
        f'model_version="{version}")',
        f'for {prefix}_output in {prefix}_result.get_response()["outputs"]:',
        f'    print({prefix}_output["name"], {prefix}_result.as_numpy({prefix}_output["name"]))',
    ]
    return "\n".join(lines)


def curl(
    http_url: str,
    name: str,
    version: int,
    inputs: Sequence[Tensor],
    example: Mapping[str, Any] | None,
) -> str:
    """A curl line that sends one request to ``name`` version ``version``: the example's
    first row written out when small, else the stored example piped from the server,
    else zeros of the input shapes."""
    url = f"{http_url}/v2/models/{quote(name, safe='')}/versions/{version}/infer"
    post = f"curl -s -X POST {url} \\\n  -H 'Content-Type: application/json'"
    stored = {t["name"]: t for t in (example or {}).get("inputs", [])}
    body = {"inputs": [_row_request(stored.get(s["name"]), s) for s in inputs]}
    if all(len(t["data"]) <= INLINE_VALUES for t in body["inputs"]):
        return f"{post} \\\n  -d {shlex.quote(json.dumps(body))}"
    if all(s["name"] in stored for s in inputs):
        return f"curl -s {extra_url(http_url, name, version, 'example')} | \\\n  {post} -d @-"
    tensors = ", ".join(_zeros_code(spec) for spec in inputs)
    code = f'import json; print(json.dumps({{"inputs": [{tensors}]}}))'
    return f"python3 -c {shlex.quote(code)} | \\\n  {post} -d @-"


def _zeros_code(spec: Tensor) -> str:
    """Python code for one input of zeros, as a V2 JSON tensor (short for any size)."""
    shape = _concrete(spec["shape"])
    return (
        f'{{"name": {spec["name"]!r}, "shape": {shape}, "datatype": {spec["datatype"]!r}, '
        f'"data": [{_zero(spec["datatype"])!r}] * {math.prod(shape)}}}'
    )


def zeros_request(inputs: Sequence[Tensor]) -> dict[str, Any]:
    """A V2 request of zeros (empty strings) with one row of each input's shape."""
    tensors = []
    for spec in inputs:
        shape = _concrete(spec["shape"])
        tensors.append(
            {
                "name": spec["name"],
                "shape": shape,
                "datatype": spec["datatype"],
                "data": [_zero(spec["datatype"])] * math.prod(shape),
            }
        )
    return {"inputs": tensors}


def first_row(tensor: Tensor) -> dict[str, Any]:
    """The tensor's first row (its whole data when it has no rows)."""
    shape = list(tensor["shape"])
    if not shape or not shape[0]:
        return dict(tensor)
    per_row = math.prod(shape[1:])
    return {**tensor, "shape": [1, *shape[1:]], "data": list(tensor["data"][:per_row])}


def image_layout(
    shape: Sequence[int], datatype: str, example_shape: Sequence[int] | None = None
) -> dict[str, Any] | None:
    """How an uploaded picture fills an input, if it is image-shaped (4-D, floats, 1 or 3
    channels first or last): ``{"layout", "channels", "height", "width"}``. Sizes the
    model leaves open are taken from the example, else :data:`DEFAULT_SIDE`."""
    if len(shape) != 4 or datatype not in FLOAT_TYPES:
        return None
    given = example_shape if example_shape and len(example_shape) == 4 else shape
    known = [e if d < 0 else d for d, e in zip(shape, given, strict=True)]
    if known[1] in (1, 3):
        layout, channels, height, width = "NCHW", known[1], known[2], known[3]
    elif known[3] in (1, 3):
        layout, channels, height, width = "NHWC", known[3], known[1], known[2]
    else:
        return None
    return {"layout": layout, "channels": channels, "height": _side(height), "width": _side(width)}


def extra_url(http_url: str, name: str, version: int, key: str) -> str:
    return f"{http_url}/v2/nbdeploy/models/{quote(name, safe='')}/versions/{version}/{key}"


def _row_request(tensor: Tensor | None, spec: Tensor) -> dict[str, Any]:
    if tensor is None:
        (zeros,) = zeros_request([spec])["inputs"]
        return dict(zeros)
    return first_row(tensor)


def _zero(datatype: str) -> Any:
    return {"BYTES": "", "BOOL": False}.get(datatype, 0)


def _small(tensor: Tensor) -> bool:
    return len(first_row(tensor)["data"]) <= INLINE_VALUES


def _nested(tensor: Tensor) -> Any:
    """The flat ``data`` in nested lists of ``shape`` (what ``np.array`` takes)."""
    data: list[Any] = list(tensor["data"])
    for size in reversed(list(tensor["shape"])[1:]):
        data = [data[i : i + size] for i in range(0, len(data), size)] if size else []
    return data if tensor["shape"] else data[0]


def _dtype(datatype: str) -> str:
    numpy = BY_V2[datatype].numpy
    return "object" if numpy == "object" else f'"{numpy}"'


def _concrete(shape: Sequence[int]) -> list[int]:
    return [d if d >= 0 else 1 for d in shape]


def _shape_text(shape: Sequence[int]) -> str:
    return "[" + ", ".join("N" if d < 0 else str(d) for d in shape) + "]"


def _side(size: int) -> int:
    return size if size > 0 else DEFAULT_SIDE


def _host(http_url: str) -> str:
    return http_url.removeprefix("http://").removeprefix("https://")


def _identifier(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)
