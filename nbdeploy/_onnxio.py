"""ONNX files: size checks, external data for models past protobuf's 2 GiB, checking.

Small models live in memory as one ``ModelProto``. A model whose tensors would push the
protobuf past 2 GiB is kept as a folder (``model.onnx`` + ``model.onnx.data``) owned by
its artifact; its ``ModelProto`` then holds the graph with references to that data.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnx

# Protobuf cannot serialize a message of 2 GiB or more; leave room for the graph itself.
LARGE_MODEL_BYTES = 2**31 - 2**26
# Models with this many bytes of weights are kept on disk with external data (exports go
# straight to a file; loads and step results move there): an in-memory proto plus a
# session built from its bytes held ~4 copies of the weights (benchmarks/results/scale.md).
ON_DISK_BYTES = 2**28
MODEL_FILE = "model.onnx"


def all_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor of ``graph``: initializers and node attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield attr.t
            for sub in [attr.g, *attr.graphs] if attr.type in (5, 10) else []:
                yield from all_tensors(sub)


def tensor_bytes(model: onnx.ModelProto) -> int:
    """Bytes held in the model's tensors (initializers and constants, subgraphs included)."""
    return sum(len(t.raw_data) or t.ByteSize() for t in all_tensors(model.graph))


def has_external_data(model: onnx.ModelProto) -> bool:
    """True when some tensor's data lives outside the protobuf."""
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in all_tensors(model.graph))


def write_external(model: onnx.ModelProto, path: Path) -> None:
    """Write ``model`` with every sizeable tensor in ``<path>.data``.

    ``model`` is changed in place into the graph-only form that refers to that file.
    """
    # onnx appends to a data file that is already there: start from an empty one.
    (path.parent / (path.name + ".data")).unlink(missing_ok=True)
    onnx.save_model(
        model,
        path,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=path.name + ".data",
        size_threshold=1024,
    )


def gather_external(model: onnx.ModelProto, folder: Path, path: Path) -> None:
    """Write ``model``, whose external data is spread over files in ``folder``, to
    ``path`` with all of it in ``<path>.data``, at offsets onnx computes anew.

    The tensors' old offsets are only valid in their old files, so the data is read back
    into ``model`` (changed in place) and written out again, not copied file by file.
    """
    onnx.load_external_data_for_model(model, str(folder))
    write_external(model, path)


def data_files(model: onnx.ModelProto) -> set[str]:
    """Relative locations of the external data files a model refers to."""
    files: set[str] = set()
    for tensor in all_tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            files.update(
                safe_location(e.value) for e in tensor.external_data if e.key == "location"
            )
    return files


def safe_location(location: str) -> str:
    """Reject external-data paths that would reach outside the model's folder."""
    parts = Path(location).parts
    if not parts or Path(location).is_absolute() or ".." in parts:
        from .errors import ArtifactError

        raise ArtifactError(
            f"external data location '{location}' points outside the model's folder; "
            f"only relative paths inside it are accepted (no '..', no absolute paths)."
        )
    return location


def data_source(folder: Path, location: str) -> Path:
    """The external data file at ``location`` in ``folder``, the model's folder.

    Subfolders are fine; links are not, anywhere along the path: they would let a model
    file serve any file on the machine as its weights.
    """
    from .errors import ArtifactError

    current = folder
    for part in Path(safe_location(location)).parts:
        current = current / part
        if current.is_symlink():
            raise ArtifactError(
                f"external data location '{location}' goes through the link '{current}'; "
                f"links are not followed. Put the data file itself at that path."
            )
    if not current.is_file():
        raise ArtifactError(
            f"external data file '{current}' is missing; the model refers to '{location}', "
            f"relative to its own folder. Keep the data file there."
        )
    return current


def relocate(model: onnx.ModelProto, mapping: dict[str, str]) -> None:
    """Point external tensors at renamed data files (in place)."""
    for tensor in all_tensors(model.graph):
        for entry in tensor.external_data:
            if entry.key == "location" and entry.value in mapping:
                entry.value = mapping[entry.value]


def transfer(src: Path, dst: Path, *, move: bool) -> None:
    """Move (when the source is ours to give away) or copy a data file.

    Not a hard link: ``onnx.checker`` refuses data files with several links, rightly, as
    a way to smuggle in files from elsewhere.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.unlink(missing_ok=True)
    if move:
        shutil.move(src, dst)
    else:
        shutil.copyfile(src, dst)


def check(model: onnx.ModelProto, path: Path | None = None) -> None:
    """``onnx.checker`` on the proto, or on the file for models past 2 GiB."""
    if path is not None:
        onnx.checker.check_model(str(path))
    else:
        onnx.checker.check_model(model)


def name_batch_dim(model: onnx.ModelProto, name: str = "batch") -> None:
    """Give an unnamed, unknown leading dimension of graph inputs/outputs a name (in place)."""
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value") and not dims[0].dim_param:
            dims[0].dim_param = name


def metadata(model: onnx.ModelProto) -> dict[str, str]:
    """The model's metadata_props as a dict."""
    return {p.key: p.value for p in model.metadata_props}


def drop_metadata(model: onnx.ModelProto, prefix: str) -> None:
    """Remove the metadata_props whose keys start with ``prefix`` (in place)."""
    keep = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(prefix)]
    del model.metadata_props[:]
    for key, value in keep:
        model.metadata_props.add(key=key, value=value)


def set_metadata(model: onnx.ModelProto, values: dict[str, Any]) -> None:
    """Set metadata_props keys (in place), replacing earlier values of the same keys."""
    keep = [p for p in model.metadata_props if p.key not in values]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in values.items():
        model.metadata_props.add(key=key, value=str(value))


def opset(model: onnx.ModelProto) -> int:
    """The model's default-domain (``ai.onnx``) opset version, 0 if none."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def topological_order(graph: onnx.GraphProto) -> list[int]:
    """Indices of ``graph``'s nodes in an order where each comes after the nodes whose
    outputs it reads (its subgraphs' reads included), keeping the given order wherever
    it already holds (Kahn's algorithm, smallest index first)."""
    import heapq

    producer = {out: i for i, node in enumerate(graph.node) for out in node.output if out}
    waiting_on: list[set[int]] = []
    readers: dict[int, list[int]] = {}
    for i, node in enumerate(graph.node):
        needs = {producer[name] for name in reads(node) if name in producer} - {i}
        waiting_on.append(needs)
        for j in needs:
            readers.setdefault(j, []).append(i)
    ready = [i for i, needs in enumerate(waiting_on) if not needs]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for j in readers.get(i, ()):
            waiting_on[j].discard(i)
            if not waiting_on[j]:
                heapq.heappush(ready, j)
    if len(order) != len(graph.node):
        raise ValueError("the graph has a cycle")
    return order


def reads(node: onnx.NodeProto) -> list[str]:
    """The names a node reads: its inputs and what its subgraphs take from outside."""
    names = list(node.input)
    for attribute in node.attribute:
        if attribute.type not in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            continue
        for graph in [attribute.g, *attribute.graphs]:
            for inner in graph.node:
                names += reads(inner)
    return names
