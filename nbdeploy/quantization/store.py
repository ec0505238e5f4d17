"""Where a scheme reads weights from and writes new ones to: one tensor at a time.

A model held in memory is rewritten in memory. A model kept on disk (from 256 MiB of
weights) is read tensor by tensor from its data files and its quantized weights are
appended to a new data file as they are made, so a step holds one float weight at a
time, never the whole model: onnxruntime's quantizer held ~6 copies of it (it loads the
model, copies it to transpose Gemm weights, and saves and re-reads it for shape
inference), which put a 1B-parameter model out of reach of a 24 GiB machine.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Protocol, TypeVar

import numpy as np
import onnx
from onnx import external_data_helper, helper, numpy_helper

from .. import _onnxio
from ..payloads import OnnxPayload

__all__ = ["DiskStore", "MemoryStore", "Store", "rewrite", "store_for"]

# Tensors smaller than this stay inside the protobuf, as onnx's own writer keeps them.
INLINE_BYTES = 1024
# Sub-byte types -> values a byte (low bits first), as onnx writes their raw data.
_PACKED: dict[int, int] = {
    onnx.TensorProto.INT4: 2, onnx.TensorProto.UINT4: 2,
    onnx.TensorProto.INT2: 4, onnx.TensorProto.UINT2: 4,
}  # fmt: skip
_CHUNK = 64 * 2**20  # bytes copied at a time when carrying a tensor over as it is
R = TypeVar("R")


class Store(Protocol):
    """Reads a model's weights and makes the tensors of its rewritten copy."""

    def read(self, tensor: onnx.TensorProto) -> np.ndarray:
        """The values of ``tensor``."""
        ...

    def put(self, array: np.ndarray, name: str) -> onnx.TensorProto:
        """A tensor named ``name`` holding ``array`` for the rewritten model."""
        ...

    def finish(self, model: onnx.ModelProto) -> onnx.ModelProto | OnnxPayload:
        """The rewritten model, once every tensor it keeps has been put or carried."""
        ...

    def discard(self) -> None:
        """Drop what was written (a rewrite that failed half way)."""
        ...


def rewrite(
    payload: OnnxPayload, change: Callable[[onnx.ModelProto, Store], R]
) -> tuple[onnx.ModelProto | OnnxPayload, R]:
    """``change`` applied to a copy of the payload's model (its graph alone when kept on
    disk) and a store for its weights: the rewritten model, and what ``change`` returned."""
    store = store_for(payload)
    model = onnx.ModelProto()
    model.CopyFrom(payload.model)
    try:
        result = change(model, store)
    except BaseException:
        store.discard()
        raise
    return store.finish(model), result


def store_for(payload: OnnxPayload) -> Store:
    """A :class:`DiskStore` for a model kept on disk, else a :class:`MemoryStore`."""
    return DiskStore(payload.path) if payload.path is not None else MemoryStore()


class MemoryStore:
    """Weights inside the protobuf: read and written with ``onnx.numpy_helper``."""

    def read(self, tensor: onnx.TensorProto) -> np.ndarray:
        """The values of an in-memory tensor."""
        return numpy_helper.to_array(tensor)

    def put(self, array: np.ndarray, name: str) -> onnx.TensorProto:
        """A tensor holding ``array``."""
        return numpy_helper.from_array(array, name)

    def finish(self, model: onnx.ModelProto) -> onnx.ModelProto:
        """``model`` itself: its tensors are already in it."""
        return model

    def discard(self) -> None:
        """Nothing to drop: nothing was written."""


class DiskStore:
    """Weights in the data files of a model kept on disk, read one tensor at a time (by
    offset, never memory-mapped whole), and the new model's appended to
    ``model.onnx.data`` in a folder of its own as they are made.

    Use it as :func:`finish`'s caller does: ``put`` the new tensors, then ``finish`` the
    rewritten graph, which copies over every tensor still read from the source. Any
    failure before ``finish`` returns removes the new folder.
    """

    def __init__(self, source: Path) -> None:
        self._source = source.parent
        self._folder = Path(tempfile.mkdtemp(prefix="nbdeploy-"))
        self._location = _onnxio.MODEL_FILE + ".data"
        self._data: BinaryIO = (self._folder / self._location).open("wb")
        self._written: set[str] = set()  # tensors put here, not to be carried again

    def read(self, tensor: onnx.TensorProto) -> np.ndarray:
        """The values of ``tensor``: from the source's data file, or from the new one for
        a tensor this store has written."""
        if not external_data_helper.uses_external_data(tensor):
            return numpy_helper.to_array(tensor)
        kind = helper.tensor_dtype_to_np_dtype(tensor.data_type)
        info = external_data_helper.ExternalDataInfo(tensor)
        folder = self._source
        if tensor.name in self._written:  # rewritten already (a step that reads it twice)
            self._data.flush()
            folder = self._folder
        count = math.prod(tensor.dims)
        with _onnxio.data_source(folder, info.location).open("rb") as file:
            if per_byte := _PACKED.get(tensor.data_type):  # packed: onnx unpacks them
                file.seek(info.offset or 0)
                inline = onnx.TensorProto(data_type=tensor.data_type, dims=tensor.dims,
                                          raw_data=file.read(-(-count // per_byte)))  # fmt: skip
                return numpy_helper.to_array(inline)
            values = np.fromfile(file, kind, count, offset=info.offset or 0)
        return values.reshape(tuple(tensor.dims))

    def put(self, array: np.ndarray, name: str) -> onnx.TensorProto:
        """A tensor for ``array``: written to the new data file unless it is tiny."""
        tensor = onnx.TensorProto(
            name=name, data_type=helper.np_dtype_to_tensor_dtype(array.dtype), dims=array.shape
        )
        if tensor.data_type in _PACKED:  # onnx packs them into raw_data
            tensor = numpy_helper.from_array(array, name)
            if len(tensor.raw_data) < INLINE_BYTES:
                return tensor
            self._append(tensor, np.frombuffer(tensor.raw_data, np.uint8))
        elif array.nbytes < INLINE_BYTES:
            return numpy_helper.from_array(array, name)
        else:
            self._append(tensor, np.ascontiguousarray(array, array.dtype.newbyteorder("<")))
        self._written.add(name)
        return tensor

    def finish(self, model: onnx.ModelProto) -> onnx.ModelProto | OnnxPayload:
        """``model`` (changed in place) with every tensor still in the source's files
        copied into the new one, byte for byte; a payload owning the new folder, or, when
        the result is smaller than ``ON_DISK_BYTES``, the model read back into memory."""
        try:
            for tensor in _onnxio.all_tensors(model.graph):
                if tensor.name not in self._written and external_data_helper.uses_external_data(
                    tensor
                ):
                    self._carry(tensor)
            self._data.close()
            path = self._folder / _onnxio.MODEL_FILE
            onnx.save_model(model, path)
            if (self._folder / self._location).stat().st_size >= _onnxio.ON_DISK_BYTES:
                return OnnxPayload(model, self._folder)
            whole = onnx.load(path)
            shutil.rmtree(self._folder, ignore_errors=True)
            return whole
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        """Remove the new folder (a step that failed half way)."""
        self._data.close()
        shutil.rmtree(self._folder, ignore_errors=True)

    def _carry(self, tensor: onnx.TensorProto) -> None:
        """Copy a source tensor's bytes into the new data file and point it there."""
        info = external_data_helper.ExternalDataInfo(tensor)
        source = _onnxio.data_source(self._source, info.location)
        start = info.offset or 0
        left = info.length if info.length is not None else source.stat().st_size - start
        offset = self._data.tell()
        with source.open("rb") as file:
            file.seek(start)
            while left > 0 and (chunk := file.read(min(_CHUNK, left))):
                self._data.write(chunk)
                left -= len(chunk)
        self._point(tensor, offset, self._data.tell() - offset)

    def _append(self, tensor: onnx.TensorProto, array: np.ndarray) -> None:
        offset = self._data.tell()
        self._data.write(array.data)
        self._point(tensor, offset, array.nbytes)

    def _point(self, tensor: onnx.TensorProto, offset: int, length: int) -> None:
        del tensor.external_data[:]
        tensor.ClearField("raw_data")
        tensor.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (("location", self._location), ("offset", offset), ("length", length)):
            tensor.external_data.add(key=key, value=str(value))
