"""Pure-Python twin of the compiled core (fanout._core): same names, same ring layout.

It exists as a test oracle and for debugging (FANOUT_CORE=python, see fanout/core.py);
production imports the compiled module. A ring made by either can be attached and served
by the other: both map the same memfd with the layout of docs/ARCHITECTURE.md.

Memory ordering: header fields are read and written through memoryview casts ("Q"/"I"),
which CPython performs as single aligned 8/4-byte loads and stores, so no value is ever
torn. CPython emits no fences; on x86-64 (total store order) plain loads and stores
already give the acquire/release order the ring rules need. Good enough for a reference;
the compiled core uses explicit __atomic builtins.
"""
from __future__ import annotations

import errno
import mmap
import os
import struct
import sys
from _socket import MSG_DONTWAIT, MSG_NOSIGNAL
from _socket import socket as _RawSocket  # not socket.socket: gevent may patch that one

if sys.byteorder != "little":  # pragma: no cover - the layout is little-endian
    raise ImportError("fanout.coreref: the ring layout needs a little-endian host")

HEADER_SIZE = 131072
GUARD = 65536
MAX_WORKERS = 64
SYNC_SLOTS = 256
SYNC_MIN_GAP = 4096          # MP3: at most one sync point per this many bytes (ingest's rule)

FORMAT_GENERIC = 0
FORMAT_OGG = 1
FLAG_LIVE = 1
FLAG_ENDED = 2

OK = 0
WOULD_BLOCK = 1
LAPPED = 2
ERROR = 3

MAX_META_BLOCK = 1 + 255 * 16
MAX_STREAM_HEADER = HEADER_SIZE - 8208   # the Ogg header area: from its offset to the data
INITIAL_METADATA = b"\x01StreamTitle='';\x00"

_MAGIC = 0x474E5246           # "FRNG" as a little-endian u32
_VERSION = 2                   # 2: the Ogg header block carries its link's start
_HEAD = struct.Struct("<IIQ")  # magic, version, capacity

# Header offsets (docs/ARCHITECTURE.md), as indexes into u32 / u64 views of the header.
_U32_MAGIC, _U32_VERSION, _U32_FLAGS, _U32_FORMAT = 0, 1, 6, 7
_U32_META_LEN, _U32_HDR_LEN = 10, 14
_U64_CAPACITY, _U64_WRITE_SEQ, _U64_META_GEN, _U64_HDR_GEN, _U64_SYNC_COUNT = 1, 2, 4, 6, 8
_U64_SYNC_TABLE = 72 // 8
_U64_LISTENERS = 2120 // 8
_U64_BYTES_SENT = 2632 // 8
_U64_HDR_START = 3144 // 8     # under the hdr seqlock: where the header's link begins
_OFF_META_BLOCK = 4096
_META_AREA = 4112
_OFF_STREAM_HEADER = 8208

_IOV_PER_SEND = 32
_SEQLOCK_SPINS = 1 << 20      # a writer stuck this long mid-update died: fail loudly
_SEQLOCK_BUSY_SPINS = 64      # then yield so a descheduled writer can finish
_EMPTY_META = b"\0"


class LappedError(Exception):
    """Ring.read() of bytes that are no longer (or may no longer be) in the ring."""


def ring_capacity_for(queue_size: int, burst_size: int) -> int:
    """Smallest power of two >= queue_size + burst_size + 2*GUARD (and >= 4*GUARD)."""
    if queue_size < 0 or burst_size < 0:
        raise ValueError("queue_size and burst_size must be >= 0")
    need = max(queue_size + burst_size + 2 * GUARD, 4 * GUARD)
    return 1 << (need - 1).bit_length()


def _check_capacity(capacity: int) -> None:
    if capacity < 4 * GUARD or capacity & (capacity - 1):
        raise ValueError(f"ring capacity must be a power of two >= {4 * GUARD}, got {capacity}")


class Ring:
    """One mount's ring, mapped from a memfd. Build with Ring.create() or Ring.attach()."""

    __slots__ = ("_fd", "_mm", "_view", "_u32", "_u64", "_cap", "_fmt")

    def __init__(self, fd: int, capacity: int) -> None:
        """Private: map `fd` (which this Ring then owns). Use create() or attach()."""
        self._mm: mmap.mmap | None = mmap.mmap(fd, HEADER_SIZE + capacity, mmap.MAP_SHARED,
                                               mmap.PROT_READ | mmap.PROT_WRITE)
        self._fd = fd
        self._cap = capacity
        self._view = memoryview(self._mm)
        self._u32 = self._view[:HEADER_SIZE].cast("I")
        self._u64 = self._view[:HEADER_SIZE].cast("Q")
        self._fmt = self._u32[_U32_FORMAT]

    @staticmethod
    def create(capacity: int, fmt: int, name: str = "fanout-ring") -> Ring:
        """A new zeroed ring in a fresh memfd (close-on-exec; pass it with pass_fds/SCM_RIGHTS).

        Raises ValueError for a bad capacity or format, OSError if the memfd cannot be made.
        """
        _check_capacity(capacity)
        if fmt not in (FORMAT_GENERIC, FORMAT_OGG):
            raise ValueError(f"unknown ring format {fmt}")
        fd = os.memfd_create(name, os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, HEADER_SIZE + capacity)
            ring = Ring(fd, capacity)
        except BaseException:
            os.close(fd)
            raise
        ring._u32[_U32_MAGIC] = _MAGIC
        ring._u32[_U32_VERSION] = _VERSION
        ring._u64[_U64_CAPACITY] = capacity
        ring._u32[_U32_FORMAT] = fmt
        ring._fmt = fmt
        ring.set_metadata(INITIAL_METADATA)
        return ring

    @staticmethod
    def attach(fd: int) -> Ring:
        """Map an existing ring. The fd is dup'ed: the caller keeps (and closes) its own.

        Raises ValueError if the fd does not hold a ring of this layout version.
        """
        head = os.pread(fd, _HEAD.size, 0)
        if len(head) < _HEAD.size:
            raise ValueError("not a fanout ring: file too short")
        magic, version, capacity = _HEAD.unpack(head)
        if magic != _MAGIC:
            raise ValueError(f"not a fanout ring: bad magic {magic:#010x}")
        if version != _VERSION:
            raise ValueError(f"ring layout version {version}, expected {_VERSION}")
        _check_capacity(capacity)
        if os.fstat(fd).st_size < HEADER_SIZE + capacity:
            raise ValueError("ring file shorter than its header says")
        own = os.dup(fd)
        try:
            return Ring(own, capacity)
        except BaseException:
            os.close(own)
            raise

    def _mmap(self) -> mmap.mmap:
        if self._mm is None:
            raise ValueError("ring is closed")
        return self._mm

    def close(self) -> None:
        """Unmap and close our fd. Idempotent; any later use raises ValueError."""
        if self._mm is None:
            return
        for view in (self._u32, self._u64, self._view):
            view.release()
        self._mm.close()
        self._mm = None
        os.close(self._fd)
        self._fd = -1

    def __del__(self) -> None:
        if getattr(self, "_mm", None) is not None:
            self.close()

    @property
    def fd(self) -> int:
        self._mmap()
        return self._fd

    @property
    def capacity(self) -> int:
        self._mmap()
        return self._cap

    @property
    def fmt(self) -> int:
        self._mmap()
        return self._fmt

    @property
    def write_seq(self) -> int:
        self._mmap()
        return int(self._u64[_U64_WRITE_SEQ])

    @property
    def flags(self) -> int:
        self._mmap()
        return int(self._u32[_U32_FLAGS])

    def set_flags(self, flags: int) -> None:
        self._mmap()
        self._u32[_U32_FLAGS] = flags

    def _is_lapped(self, pos: int, wseq: int) -> bool:
        return pos < wseq + GUARD - self._cap

    # -- audio --------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append a buffer; write_seq is published after every piece of at most GUARD bytes."""
        mm = self._mmap()
        src = memoryview(data).cast("B")
        seq = int(self._u64[_U64_WRITE_SEQ])
        done = 0
        while done < len(src):
            off = seq % self._cap
            chunk = min(len(src) - done, GUARD, self._cap - off)
            mm[HEADER_SIZE + off:HEADER_SIZE + off + chunk] = src[done:done + chunk]
            done += chunk
            seq += chunk
            self._u64[_U64_WRITE_SEQ] = seq

    def read(self, seq: int, n: int) -> bytes:
        """Copy of [seq, seq+n) clipped to write_seq (b"" if seq is at or past it).

        Raises LappedError if seq is (or, after the copy, was) too old to be trusted.
        """
        mm = self._mmap()
        if seq < 0 or n < 0:
            raise ValueError("seq and n must be >= 0")
        wseq = self.write_seq
        if self._is_lapped(seq, wseq):
            raise LappedError(f"sequence {seq} is no longer in the ring (write_seq {wseq})")
        count = min(n, wseq - seq)
        if count <= 0:
            return b""
        off = seq % self._cap
        first = min(count, self._cap - off)
        out = mm[HEADER_SIZE + off:HEADER_SIZE + off + first]
        out += mm[HEADER_SIZE:HEADER_SIZE + count - first]
        wseq = self.write_seq
        if self._is_lapped(seq, wseq):
            raise LappedError(f"sequence {seq} was overwritten during the read (write_seq {wseq})")
        return out

    # -- sync points --------------------------------------------------------------------

    def add_sync_point(self, seq: int) -> None:
        """Record where a listener may start. Sequences not above the last one are ignored."""
        self._mmap()
        if seq < 0:
            raise ValueError("seq must be >= 0")
        count = int(self._u64[_U64_SYNC_COUNT])
        if count > 0 and seq <= self._u64[_U64_SYNC_TABLE + (count - 1) % SYNC_SLOTS]:
            return
        self._u64[_U64_SYNC_TABLE + count % SYNC_SLOTS] = seq
        self._u64[_U64_SYNC_COUNT] = count + 1

    def start_position(self, burst_size: int) -> int:
        """Where a new listener starts: the oldest sync point within burst_size of write_seq
        that is safely inside the ring, else the newest safe sync point, else write_seq."""
        self._mmap()
        if burst_size < 0:
            raise ValueError("burst_size must be >= 0")
        return self._start_from(burst_size, None)

    def _start_from(self, burst_size: int, link_start: int | None) -> int:
        """start_position, ignoring sync points before `link_start` (if given); then
        link_start itself (a page start) is the fallback before write_seq."""
        wseq = self.write_seq
        floor_burst = max(wseq - burst_size, 0)
        count = int(self._u64[_U64_SYNC_COUNT])
        newest: int | None = None
        for i in range(max(count - SYNC_SLOTS, 0), count):
            s = int(self._u64[_U64_SYNC_TABLE + i % SYNC_SLOTS])
            if s > wseq:           # recorded ahead of the bytes it points at
                break
            if self._is_lapped(s, wseq) or (link_start is not None and s < link_start):
                continue
            if s >= floor_burst:
                return s
            newest = s
        if newest is not None:
            return newest
        if link_start is not None and link_start <= wseq and not self._is_lapped(link_start, wseq):
            return link_start
        return wseq

    def start_point(self, burst_size: int) -> tuple[int, bytes]:
        """(position, header pages) for a new listener: where it starts and what it must be
        sent first. Same rules as the compiled core's (see there): never before the
        link_start of the last set_stream_header; for generic rings an empty header set
        marks a seam newcomers start after.
        """
        self._mmap()
        if burst_size < 0:
            raise ValueError("burst_size must be >= 0")
        ogg = self._fmt == FORMAT_OGG
        while True:
            gen, pages, link_start = self._seqlock_read(_U64_HDR_GEN, _U32_HDR_LEN,
                                                        _OFF_STREAM_HEADER, MAX_STREAM_HEADER,
                                                        _U64_HDR_START)
            if ogg and gen == 0 and not self._is_lapped(0, self.write_seq):
                pos = 0
            else:
                pos = self._start_from(burst_size, link_start if gen else None)
            # A header set published meanwhile may come with sync points of its own link,
            # which the search above could have picked: look again.
            if self._u64[_U64_HDR_GEN] == gen:
                return pos, pages

    # -- metadata and Ogg headers (seqlocks) --------------------------------------------

    def _seqlock_write(self, gen_index: int, len_index: int, area_off: int, data: bytes,
                       extra_index: int = 0, extra: int = 0) -> None:
        """Replace a seqlocked block (and the u64 at `extra_index`, if not 0)."""
        mm = self._mmap()
        odd = int(self._u64[gen_index]) | 1
        self._u64[gen_index] = odd
        mm[area_off:area_off + len(data)] = data
        if extra_index:
            self._u64[extra_index] = extra
        self._u32[len_index] = len(data)
        self._u64[gen_index] = odd + 1

    def _seqlock_read(self, gen_index: int, len_index: int, area_off: int, area_max: int,
                      extra_index: int = 0) -> tuple[int, bytes, int]:
        """(generation, block, the u64 at `extra_index` or 0): a consistent copy."""
        mm = self._mmap()
        for attempt in range(_SEQLOCK_SPINS):
            g1 = int(self._u64[gen_index])
            if g1 & 1:
                if attempt >= _SEQLOCK_BUSY_SPINS:
                    os.sched_yield()
                continue
            n = min(int(self._u32[len_index]), area_max)  # a torn length fails the re-check
            out = mm[area_off:area_off + n]
            extra = int(self._u64[extra_index]) if extra_index else 0
            if self._u64[gen_index] == g1:
                return g1, out, extra
        raise RuntimeError("ring seqlock stayed busy: its writer died mid-update?")

    def set_metadata(self, block: bytes) -> None:
        """Publish a full ICY block (length byte included). ValueError if malformed."""
        b = bytes(block)
        if len(b) == 0 or len(b) > MAX_META_BLOCK or len(b) != 1 + 16 * b[0]:
            raise ValueError(f"not an ICY metadata block of at most {MAX_META_BLOCK} bytes "
                             f"(got {len(b)} bytes)")
        self._seqlock_write(_U64_META_GEN, _U32_META_LEN, _OFF_META_BLOCK, b)

    def metadata(self) -> tuple[int, bytes]:
        """(meta_gen, block): a consistent copy of the current ICY block."""
        gen, block, _ = self._seqlock_read(_U64_META_GEN, _U32_META_LEN, _OFF_META_BLOCK,
                                           _META_AREA)
        return gen, block

    def set_stream_header(self, data: bytes, link_start: int) -> None:
        """Publish the Ogg header pages a joining listener needs first, with the sequence of
        the first data page of their link (already written). ValueError if too big: the
        ingest never hands over a set larger than MAX_STREAM_HEADER."""
        b = bytes(data)
        self._mmap()
        if len(b) > MAX_STREAM_HEADER:
            raise ValueError(f"stream header of {len(b)} bytes exceeds {MAX_STREAM_HEADER}")
        if link_start < 0:
            raise ValueError("link_start must be >= 0")
        self._seqlock_write(_U64_HDR_GEN, _U32_HDR_LEN, _OFF_STREAM_HEADER, b,
                            _U64_HDR_START, link_start)

    def stream_header(self) -> tuple[int, bytes]:
        """(hdr_gen, header bytes): a consistent copy (b"" before any is set)."""
        gen, pages, _ = self._seqlock_read(_U64_HDR_GEN, _U32_HDR_LEN, _OFF_STREAM_HEADER,
                                           MAX_STREAM_HEADER)
        return gen, pages

    # -- per-worker counters ------------------------------------------------------------

    def _counter_index(self, table: int, worker: int) -> int:
        self._mmap()
        if not 0 <= worker < MAX_WORKERS:
            raise ValueError(f"worker slot {worker} out of range 0..{MAX_WORKERS - 1}")
        return table + worker

    def set_listener_count(self, worker: int, n: int) -> None:
        if n < 0:
            raise ValueError("listener count must be >= 0")
        self._u64[self._counter_index(_U64_LISTENERS, worker)] = n

    def listener_counts(self) -> list[int]:
        self._mmap()
        return [int(v) for v in self._u64[_U64_LISTENERS:_U64_LISTENERS + MAX_WORKERS]]

    def listener_count(self) -> int:
        return sum(self.listener_counts())

    def add_bytes_sent(self, worker: int, n: int) -> None:
        if n < 0:
            raise ValueError("byte count must be >= 0")
        i = self._counter_index(_U64_BYTES_SENT, worker)
        self._u64[i] = (self._u64[i] + n) & 0xFFFF_FFFF_FFFF_FFFF  # wraps like the C u64

    def bytes_sent(self) -> int:
        self._mmap()
        return sum(int(v) for v in self._u64[_U64_BYTES_SENT:_U64_BYTES_SENT + MAX_WORKERS])

    def __repr__(self) -> str:
        if self._mm is None:
            return "<Ring closed>"
        return (f"<Ring fd={self._fd} capacity={self._cap} fmt={self._fmt} "
                f"write_seq={self.write_seq}>")


class Listener:
    """One listener's send state. The caller owns the socket; the sender never closes it."""

    __slots__ = ("fd", "pos", "lag_limit", "metaint", "meta_left", "meta_gen", "sent",
                 "audio_sent", "tag", "_prefix", "_prefix_off", "_pending_meta", "_pending_off")

    def __init__(self, fd: int, pos: int, lag_limit: int, metaint: int = 0,
                 prefix: bytes = b"") -> None:
        self.fd = fd
        self.pos = pos
        self.lag_limit = lag_limit
        self.metaint = metaint
        self.meta_left = metaint
        self.meta_gen = 0
        self.sent = 0
        self.audio_sent = 0
        self.tag: object = None
        self._prefix: bytes | None = bytes(prefix) or None
        self._prefix_off = 0
        self._pending_meta: bytes | None = None  # ICY block cut by a partial send
        self._pending_off = 0

    @property
    def prefix_left(self) -> int:
        if self._prefix is None:
            return 0
        return len(self._prefix) - self._prefix_off

    def __repr__(self) -> str:
        return (f"<Listener fd={self.fd} pos={self.pos} sent={self.sent} "
                f"metaint={self.metaint} tag={self.tag!r}>")


# Piece kinds of one sendmsg, so a partial send can be accounted piece by piece.
_PIECE_PREFIX, _PIECE_PENDING_META, _PIECE_RING, _PIECE_META_FULL, _PIECE_META_EMPTY = range(5)

_Piece = tuple[int, "bytes | memoryview"]


def _sendmsg(fd: int, buffers: list[bytes | memoryview]) -> int:
    """One non-blocking sendmsg on a borrowed fd; raises OSError like socket.sendmsg."""
    sock = _RawSocket(fileno=fd)
    try:
        return sock.sendmsg(buffers, [], MSG_NOSIGNAL | MSG_DONTWAIT)
    finally:
        sock.detach()      # the caller owns the fd


def _build_pieces(ring: Ring, lis: Listener, wseq: int, budget: int,
                  meta: list[tuple[int, bytes]]) -> list[_Piece]:
    """The iovecs of one send: prefix, a cut ICY block, ring bytes with ICY blocks."""
    pieces: list[_Piece] = []
    if lis._prefix is not None:
        pieces.append((_PIECE_PREFIX, lis._prefix[lis._prefix_off:]))
    if lis._pending_meta is not None:
        pieces.append((_PIECE_PENDING_META, lis._pending_meta[lis._pending_off:]))
    cap = ring._cap
    data = ring._view[HEADER_SIZE:]
    take = min(max(wseq - lis.pos, 0), budget)
    p, left, lgen = lis.pos, lis.meta_left, lis.meta_gen
    while True:
        if lis.metaint and left == 0:
            if len(pieces) == _IOV_PER_SEND:
                break
            if not meta:               # read once per pass, and only if needed
                meta.append(ring.metadata())
            gen, block = meta[0]
            if lgen != gen:
                pieces.append((_PIECE_META_FULL, block))
                lgen = gen
            else:
                pieces.append((_PIECE_META_EMPTY, _EMPTY_META))
            left = lis.metaint
        if take == 0 or len(pieces) == _IOV_PER_SEND:
            break
        off = p % cap
        chunk = min(take, cap - off)
        if lis.metaint:
            chunk = min(chunk, left)
            left -= chunk
        pieces.append((_PIECE_RING, data[off:off + chunk]))
        p += chunk
        take -= chunk
    return pieces


def _account_sent(lis: Listener, pieces: list[_Piece], sent: int,
                  meta: list[tuple[int, bytes]]) -> int:
    """Apply a (possibly partial) send of `sent` bytes over the pieces; returns ring bytes."""
    ring_sent = 0
    left = sent
    for kind, buf in pieces:
        length = len(buf)
        k = min(left, length)
        left -= k
        if kind == _PIECE_PREFIX:
            lis._prefix_off += k
            if lis._prefix is not None and lis._prefix_off == len(lis._prefix):
                lis._prefix, lis._prefix_off = None, 0
        elif kind == _PIECE_PENDING_META:
            lis._pending_off += k
            if lis._pending_meta is not None and lis._pending_off == len(lis._pending_meta):
                lis._pending_meta, lis._pending_off = None, 0
        elif kind == _PIECE_RING:
            lis.pos += k
            ring_sent += k
            if lis.metaint:
                lis.meta_left -= k
        else:
            if k == 0:             # not started: rebuilt next pass with the then-current block
                break
            lis.meta_left = lis.metaint
            if kind == _PIECE_META_FULL:
                gen, block = meta[0]
                lis.meta_gen = gen
                if k < length:     # its rest goes first next pass, even if metadata changes
                    lis._pending_meta, lis._pending_off = block, k
        if k < length:
            break
    lis.sent += sent
    lis.audio_sent += ring_sent
    return ring_sent


def send_many(ring: Ring, listeners: list[Listener], budget: int) -> list[tuple[Listener, int, int]]:
    """One non-blocking pass over `listeners`; see docs/ARCHITECTURE.md, "The sender".

    Returns [(listener, status, errno)] for the listeners that are not simply caught up:
    WOULD_BLOCK (errno EAGAIN, also after a partial send), LAPPED (errno 0; nothing sent if
    detected before the send) or ERROR (the sendmsg errno). Accounting on the ring
    (add_bytes_sent) is the caller's job.
    """
    if budget < 0:
        raise ValueError("budget must be >= 0")
    ring._mmap()
    problems: list[tuple[Listener, int, int]] = []
    meta: list[tuple[int, bytes]] = []     # the pass's one metadata read, once needed
    for lis in listeners:
        if not isinstance(lis, Listener):
            raise TypeError(f"expected a Listener, got {type(lis).__name__}")
        wseq = ring.write_seq
        start = lis.pos
        if wseq > start and (wseq - start > lis.lag_limit or ring._is_lapped(start, wseq)):
            problems.append((lis, LAPPED, 0))
            continue
        pieces = _build_pieces(ring, lis, wseq, budget, meta)
        if not pieces:
            continue
        total = sum(len(buf) for _, buf in pieces)
        try:
            sent = _sendmsg(lis.fd, [buf for _, buf in pieces])
        except BlockingIOError:
            problems.append((lis, WOULD_BLOCK, errno.EAGAIN))
            continue
        except OSError as exc:
            problems.append((lis, ERROR, exc.errno or 0))
            continue
        if _account_sent(lis, pieces, sent, meta) and ring._is_lapped(start, ring.write_seq):
            # The guard rule: the bytes from `start` on may have been overwritten while the
            # kernel copied them.
            problems.append((lis, LAPPED, 0))
            continue
        if sent < total:
            problems.append((lis, WOULD_BLOCK, errno.EAGAIN))
    return problems
