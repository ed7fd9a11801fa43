"""Server-wide counters shared by the supervisor and all workers.

Theory of operation: a small memfd made by the supervisor and mapped by every worker. Each
process writes only its own row (one writer per slot, so no atomics are needed on x86-64's
aligned 8-byte stores); anyone may sum a column. This is what lets a worker enforce the
server-wide `<limits><clients>` without a round trip to the supervisor, what lets any
worker's /metrics show every process's internal errors (`fanout.supervised`), and where a
worker's heartbeat lives, which the supervisor watches (a worker that stops beating is
killed and replaced, as gunicorn's arbiter does with its workers' temp files).
"""
from __future__ import annotations

import hashlib
import mmap
import os
import struct

from fanout import core
from fanout.supervised import UNITS, error_field

# Most workers a server runs (--workers): each has a listener and a bytes-sent slot in
# every ring's header, so the ring layout sets the limit. Written once, here.
MAX_WORKERS = core.MAX_WORKERS
# The supervisor's row (its internal errors and relay connections), after the workers' rows.
SUPERVISOR_ROW = MAX_WORKERS
# Running totals since start, by Icecast's /admin/stats names (what 2.4.4 counts in each:
# requests other than sources, listeners served, sources let in, relay connections, files).
CONNECTION_TOTALS = ("client_connections", "listener_connections", "source_client_connections",
                     "source_relay_connections", "file_connections")
# Per row: gauges and counters of its worker, its last heartbeat (CLOCK_MONOTONIC ms, 0:
# none yet), the sender passes its pump made (fanout/worker/pump.py), its running totals,
# and the internal errors of its process by unit.
FIELDS = ("clients", "listeners", "sources", "accepted", "refused", "heartbeat",
          "pump_passes", *CONNECTION_TOTALS, *(error_field(unit) for unit in UNITS))
# What a dead worker's row forgets: its connections are gone; cumulative counts are kept.
GAUGES = ("clients", "listeners", "sources", "heartbeat")
_ROW = struct.Struct("<" + "Q" * len(FIELDS))
_INDEX = {name: index for index, name in enumerate(FIELDS)}
ROWS = MAX_WORKERS + 1
# Connections per client address (DESIGN invariant 6), counted across processes without a
# lock: a count-min sketch of IP_HASHES tables of IP_BUCKETS buckets, each bucket one u32
# per row (one writer each). An address's count is the smallest of its buckets' sums, so
# it is never under-counted; another address shares both its buckets only rarely (then
# both count for each other). 2 x 4096 x 65 x 4 bytes: 2 MiB, mapped once per process.
IP_HASHES = 2
IP_BUCKETS = 4096
_IP_BASE = _ROW.size * ROWS
SIZE = _IP_BASE + IP_HASHES * IP_BUCKETS * ROWS * 4


class Counters:
    """Per-process rows of u64 counters in shared memory."""

    def __init__(self, fd: int, owned: bool) -> None:
        self.fd = fd
        self._owned = owned
        self._map = mmap.mmap(fd, SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._ips = memoryview(self._map)[_IP_BASE:].cast("I")

    @classmethod
    def create(cls) -> "Counters":
        fd = os.memfd_create("fanout-counters", os.MFD_CLOEXEC)
        os.ftruncate(fd, SIZE)
        return cls(fd, owned=True)

    @classmethod
    def attach(cls, fd: int) -> "Counters":
        return cls(fd, owned=False)

    def _offset(self, row: int, name: str) -> int:
        return row * _ROW.size + _INDEX[name] * 8

    def row(self, row: int) -> dict[str, int]:
        return dict(zip(FIELDS, _ROW.unpack_from(self._map, row * _ROW.size)))

    def get(self, row: int, name: str) -> int:
        (value,) = struct.unpack_from("<Q", self._map, self._offset(row, name))
        return int(value)

    def set(self, row: int, name: str, value: int) -> None:
        struct.pack_into("<Q", self._map, self._offset(row, name), max(0, value))

    def add(self, row: int, name: str, delta: int) -> None:
        self.set(row, name, self.get(row, name) + delta)

    def total(self, name: str) -> int:
        index = _INDEX[name]
        return sum(_ROW.unpack_from(self._map, k * _ROW.size)[index] for k in range(ROWS))

    def beat(self, worker: int, now: float) -> None:
        """Worker `worker` is alive at `now` (time.monotonic(): one clock for every process)."""
        self.set(worker, "heartbeat", int(now * 1000))

    def last_beat(self, worker: int) -> float | None:
        """When `worker` last beat (time.monotonic() seconds), None if it never did."""
        millis = self.get(worker, "heartbeat")
        return millis / 1000 if millis else None

    def internal_errors(self) -> dict[str, int]:
        """Internal errors of every process, summed, by unit."""
        return {unit: self.total(error_field(unit)) for unit in UNITS}

    def reset_row(self, worker: int) -> None:
        """Zero a dead worker's gauges (its per-address counts too); its cumulative
        counts are kept."""
        for name in GAUGES:
            self.set(worker, name, 0)
        for bucket in range(IP_HASHES * IP_BUCKETS):
            self._ips[bucket * ROWS + worker] = 0

    def ip_connections(self, ip: str) -> int:
        """Connections from address `ip` in every process (never fewer than there are)."""
        return min(sum(self._ips[b * ROWS:(b + 1) * ROWS]) for b in ip_buckets(ip))

    def add_ip(self, row: int, ip: str, delta: int) -> None:
        """Count `delta` more connections from `ip` in process row `row`."""
        for bucket in ip_buckets(ip):
            slot = bucket * ROWS + row
            self._ips[slot] = max(0, self._ips[slot] + delta)

    def close(self) -> None:
        self._ips.release()
        self._map.close()
        os.close(self.fd)


def ip_buckets(ip: str) -> tuple[int, ...]:
    """The buckets of address `ip`, one per table (the same in every process: a keyed
    hash, not Python's per-process salted one)."""
    digest = hashlib.blake2b(ip.encode(), digest_size=4 * IP_HASHES).digest()
    return tuple(table * IP_BUCKETS + int.from_bytes(digest[4 * table:4 * table + 4], "little")
                 % IP_BUCKETS for table in range(IP_HASHES))
