"""Server-wide counters shared by all workers.

Theory of operation: a small memfd made by the supervisor and mapped by every worker. Each
worker writes only its own row (one writer per slot, so no atomics are needed on x86-64's
aligned 8-byte stores); anyone may sum a column. This is what lets a worker enforce the
server-wide `<limits><clients>` without a round trip to the supervisor.
"""
from __future__ import annotations

import mmap
import os
import struct

MAX_WORKERS = 64
FIELDS = ("clients", "listeners", "sources", "accepted", "refused")
_ROW = struct.Struct("<" + "Q" * len(FIELDS))
SIZE = _ROW.size * MAX_WORKERS


class Counters:
    """Per-worker rows of u64 counters in shared memory."""

    def __init__(self, fd: int, owned: bool) -> None:
        self.fd = fd
        self._owned = owned
        self._map = mmap.mmap(fd, SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)

    @classmethod
    def create(cls) -> "Counters":
        fd = os.memfd_create("fanout-counters", os.MFD_CLOEXEC)
        os.ftruncate(fd, SIZE)
        return cls(fd, owned=True)

    @classmethod
    def attach(cls, fd: int) -> "Counters":
        return cls(fd, owned=False)

    def row(self, worker: int) -> dict[str, int]:
        return dict(zip(FIELDS, _ROW.unpack_from(self._map, worker * _ROW.size)))

    def add(self, worker: int, name: str, delta: int) -> None:
        offset = worker * _ROW.size + FIELDS.index(name) * 8
        (value,) = struct.unpack_from("<Q", self._map, offset)
        struct.pack_into("<Q", self._map, offset, max(0, value + delta))

    def total(self, name: str) -> int:
        index = FIELDS.index(name)
        return sum(_ROW.unpack_from(self._map, k * _ROW.size)[index] for k in range(MAX_WORKERS))

    def reset_row(self, worker: int) -> None:
        """Zero a dead worker's row (its connections are gone); cumulative counts are kept."""
        for name in ("clients", "listeners", "sources"):
            offset = worker * _ROW.size + FIELDS.index(name) * 8
            struct.pack_into("<Q", self._map, offset, 0)

    def close(self) -> None:
        self._map.close()
        os.close(self.fd)
