"""Triton's system shared memory: a client on the same host puts a tensor in a POSIX
shared memory segment (``tritonclient.utils.shared_memory``), registers it as a region,
and names the region in a request instead of sending the bytes through a socket; the
server reads inputs from, and writes outputs to, the region.

Regions are the server's (as on Triton, any client may use a region another registered),
checked at registration (a plain segment under ``/dev/shm``, offset and size inside it)
and at every use (offset and byte size inside the region), and closed on unregister and
when the server stops; the segments themselves stay the client's.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeGuard

import numpy as np

from ..errors import ProtocolError

__all__ = ["CUDA_SHM_REFUSAL", "Region", "SharedMemory", "ShmRef"]

SHM_FOLDER = "/dev/shm"
CUDA_SHM_REFUSAL = (
    "CUDA shared memory is not supported on this server (it runs models on the CPU); "
    "use system shared memory (tritonclient.utils.shared_memory) instead"
)
_KEY = re.compile(r"^/?[A-Za-z0-9_.-]{1,200}$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


@dataclass(frozen=True)
class ShmRef:
    """Where a tensor is: ``byte_size`` bytes at ``offset`` in the region ``region``."""

    region: str
    byte_size: int
    offset: int = 0


@dataclass
class Region:
    """One registered region: ``byte_size`` bytes at ``offset`` of the segment ``key``."""

    name: str
    key: str
    offset: int
    byte_size: int
    memory: mmap.mmap = field(repr=False)

    def status(self) -> dict[str, object]:
        return {"name": self.name, "key": self.key, "offset": self.offset,
                "byte_size": self.byte_size}  # fmt: skip


class SharedMemory:
    """The server's registered system shared memory regions."""

    def __init__(self) -> None:
        self._regions: dict[str, Region] = {}

    def register(self, name: str, key: object, offset: object, byte_size: object) -> None:
        """Map ``byte_size`` bytes at ``offset`` of the segment ``key`` as region ``name``
        (the arguments as a request gave them: each is checked)."""
        key, offset, byte_size = _check_region_args(name, key, offset, byte_size)
        if name in self._regions:
            raise ProtocolError(
                f"shared memory region '{name}' already in manager; unregister it first",
                status=409,
            )
        self._regions[name] = Region(name, key, offset, byte_size, _map(key, offset, byte_size))

    def unregister(self, name: str = "") -> None:
        """Forget one region (or every region); unknown names are no error, as on Triton."""
        for each in [name] if name else list(self._regions):
            region = self._regions.pop(each, None)
            if region is None:
                continue
            with contextlib.suppress(BufferError):  # a request still reads it: closed after
                region.memory.close()

    def status(self, name: str = "") -> list[dict[str, object]]:
        if name and name not in self._regions:
            raise ProtocolError(f"Unable to find system shared memory region: '{name}'",
                                status=404)  # fmt: skip
        return [r.status() for n, r in sorted(self._regions.items()) if not name or n == name]

    def view(self, tensor: str, ref: ShmRef) -> memoryview:
        """The input's bytes where they are, not copied (as Triton reads them: the client
        must not change a region while its request runs)."""
        region, start = self._slice(tensor, ref)
        return memoryview(region.memory)[start : start + ref.byte_size]

    def write(self, tensor: str, ref: ShmRef, array: np.ndarray, raw: bytes | None) -> int:
        """Put an output into its region (``raw``: its serialized bytes, for BYTES);
        returns the bytes written."""
        region, start = self._slice(tensor, ref)
        size = len(raw) if raw is not None else array.nbytes
        if size > ref.byte_size:
            raise ProtocolError(
                f"shared memory size specified with the request for output '{tensor}' "
                f"({ref.byte_size} bytes) should be at least {size} bytes to hold the "
                "results"
            )
        if raw is not None:
            region.memory[start : start + size] = raw
        else:  # one copy, straight from the result into the region
            target = np.frombuffer(region.memory, array.dtype, array.size, start)
            target[...] = array.reshape(-1)
        return size

    def close(self) -> None:
        self.unregister()

    def _slice(self, tensor: str, ref: ShmRef) -> tuple[Region, int]:
        region = self._regions.get(ref.region)
        if region is None:
            raise ProtocolError(
                f"Unable to find system shared memory region: '{ref.region}' (for '{tensor}')"
            )
        if ref.offset < 0 or ref.byte_size < 0 or ref.offset + ref.byte_size > region.byte_size:
            raise ProtocolError(
                f"Invalid offset + byte size for shared memory region: '{ref.region}' "
                f"('{tensor}': {ref.byte_size} bytes at offset {ref.offset}; the region has "
                f"{region.byte_size})"
            )
        return region, region.offset + ref.offset


def _check_region_args(
    name: str, key: object, offset: object, byte_size: object
) -> tuple[str, int, int]:
    if not sys.platform.startswith("linux"):
        raise ProtocolError("system shared memory is supported on Linux only", status=501)
    if not _NAME.match(name):
        raise ProtocolError(f"invalid shared memory region name {name!r}")
    if not isinstance(key, str) or not _KEY.match(key) or key.strip("/") in ("", ".", ".."):
        raise ProtocolError(
            f"shared memory key {key!r} must name a POSIX shared memory segment, such as "
            "'/input_data'"
        )
    if not (_integer(offset) and _integer(byte_size)) or offset < 0 or byte_size <= 0:
        raise ProtocolError(
            f"'offset' ({offset!r}) and 'byte_size' ({byte_size!r}) must be integers, >= 0 and > 0"
        )
    return key, offset, byte_size


def _integer(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _map(key: str, offset: int, byte_size: int) -> mmap.mmap:
    path = Path(SHM_FOLDER) / key.lstrip("/")
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    except OSError as err:
        raise ProtocolError(
            f"Unable to open shared memory region: '{key}': {err.strerror}; create it with "
            "tritonclient.utils.shared_memory.create_shared_memory_region first"
        ) from err
    try:
        size = os.fstat(fd).st_size
        if offset + byte_size > size:
            raise ProtocolError(
                f"shared memory segment '{key}' has {size} bytes; offset {offset} + "
                f"byte_size {byte_size} goes past its end"
            )
        return mmap.mmap(fd, size)
    finally:
        os.close(fd)
