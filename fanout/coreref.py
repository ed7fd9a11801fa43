"""Pure-Python twin of the compiled core (fanout._core): same names, same ring layout.

It exists as a test oracle and for debugging (FANOUT_CORE=python, see fanout/core.py);
production imports the compiled module. A ring made by either can be attached and served
by the other: both map the same memfd with the layout of docs/ARCHITECTURE.md.

Memory ordering: header fields are read and written through memoryview casts ("Q"/"I"),
which CPython performs as single aligned 8/4-byte loads and stores, so no value is ever
torn. CPython emits no fences, so this twin runs on x86-64 only (checked at import; the
compiled core has the same list in _core/atomics.h, with aarch64 added by its fences):
there, total store order already gives what the ring rules need - stores become visible
in program order (the release store of write_seq, and the writer's next copy only after
it: ring_publish's fence in _core/_core.pxd) and loads are not reordered with loads (the
readers' acquire loads and fences). The one order TSO does not give, a store before a
later load (the doorbell handshake), is made by _store_load_fence.
"""
from __future__ import annotations

import _thread
import errno
import mmap
import os
import platform
import struct
import sys
from _socket import MSG_DONTWAIT, MSG_NOSIGNAL
from _socket import socket as _RawSocket  # not socket.socket: gevent may patch that one

if sys.byteorder != "little":  # pragma: no cover - the layout is little-endian
    raise ImportError("fanout.coreref: the ring layout needs a little-endian host")
if platform.machine() not in ("x86_64", "AMD64"):  # pragma: no cover - see the docstring
    raise ImportError("fanout.coreref: without fences this twin is correct on x86-64 only")

HEADER_SIZE = 131072
GUARD = 65536
PAGE = 4096                  # capacities are whole pages
MIN_CAPACITY = 2 * GUARD     # a reader's window (capacity - GUARD) holds what the writer may
                             # hold back (GUARD)
WAKE_BATCH = 8192            # bytes between two doorbell checks of a new ring
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
_VERSION = 3                   # 2: the Ogg header block carries its link's start;
                               # 3: any capacity in pages, wake-up fields
_HEAD = struct.Struct("<IIQ")  # magic, version, capacity

# Header offsets (docs/ARCHITECTURE.md), as indexes into u32 / u64 views of the header.
_U32_MAGIC, _U32_VERSION, _U32_FLAGS, _U32_FORMAT = 0, 1, 6, 7
_U32_META_LEN, _U32_HDR_LEN = 10, 14
_U64_CAPACITY, _U64_WRITE_SEQ, _U64_META_GEN, _U64_HDR_GEN, _U64_SYNC_COUNT = 1, 2, 4, 6, 8
_U64_SYNC_TABLE = 72 // 8
_U64_LISTENERS = 2120 // 8
_U64_BYTES_SENT = 2632 // 8
_U64_HDR_START = 3144 // 8     # under the hdr seqlock: where the header's link begins
_U64_WAKE_SEQ = 3152 // 8      # write_seq at the writer's last doorbell check
_U64_WAKE_BATCH = 3160 // 8    # bytes between two doorbell checks
_U64_READERS = 3200 // 8       # [64]: worker k serves readers of this ring (0/1)
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
    """The data area a mount needs, rounded up to whole pages: max(queue_size, burst_size)
    + 2*GUARD. A listener may lag queue_size bytes, its burst included (Icecast's queue
    holds the burst too); one GUARD is what the writer may hold unpublished, the other lets
    the writer move on while a listener's send is in the kernel. The larger of the two
    sizes: a burst over queue-size still starts inside the ring."""
    if queue_size < 0 or burst_size < 0:
        raise ValueError("queue_size and burst_size must be >= 0")
    need = max(queue_size, burst_size) + 2 * GUARD
    return -(-need // PAGE) * PAGE


def _check_capacity(capacity: int) -> None:
    # Whole pages: memory comes by the page, so a capacity between two would cost the
    # next one anyway.
    if capacity < MIN_CAPACITY or capacity % PAGE:
        raise ValueError(f"ring capacity must be a multiple of {PAGE} bytes and "
                         f">= {MIN_CAPACITY}, got {capacity}")


# The doorbell table (_core/_core.pxd, "doorbell table"): slot k's block at
# _BELL_SLOT_BASE + _BELL_SLOT_STRIDE * k holds u64 armed, u64 rang.
_BELL_MAGIC = 0x4C454246       # "FBEL" as a little-endian u32
_BELL_VERSION = 1
_BELL_TABLE_BYTES = 8192
_BELL_HEAD = struct.Struct("<III")   # magic, version, slots
_BELL_SLOT_BASE = 64
_BELL_SLOT_STRIDE = 64
# A lock round trip is a store-load fence: CPython has none, but an uncontended
# acquire/release of a real lock runs locked read-modify-writes (sem_trywait/sem_post),
# which drain the store buffer on x86-64. (fanout never monkey-patches: a gevent lock is
# pure Python and would not fence.)
_FENCE_LOCK = _thread.allocate_lock()


def _store_load_fence() -> None:
    """fo_fence_seq_cst of _core/atomics.h: earlier stores visible before later loads."""
    with _FENCE_LOCK:
        pass


class Doorbells:
    """The workers' doorbells (fanout._core's theory of operation, "Wake-ups"): a shared
    table and one eventfd per worker slot. Build with Doorbells.create() (the supervisor,
    before it starts workers) or Doorbells.attach() (a worker, from the inherited fds)."""

    __slots__ = ("_fd", "_mm", "_u64", "_slots", "_fds")

    def __init__(self, fd: int, slots: int) -> None:
        """Private: map the table memfd `fd` (which this object then owns)."""
        try:
            self._mm: mmap.mmap | None = mmap.mmap(fd, _BELL_TABLE_BYTES, mmap.MAP_SHARED,
                                                   mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._u64 = memoryview(self._mm).cast("Q")
        self._slots = slots
        self._fds = [-1] * MAX_WORKERS

    @staticmethod
    def create(slots: int) -> Doorbells:
        """A zeroed table in a fresh memfd and `slots` eventfds, all close-on-exec (pass
        them with pass_fds) and the eventfds non-blocking. Raises ValueError unless
        1 <= slots <= MAX_WORKERS, OSError if the kernel refuses an fd."""
        if not 1 <= slots <= MAX_WORKERS:
            raise ValueError(f"doorbell slots must be 1..{MAX_WORKERS}, got {slots}")
        fd = os.memfd_create("fanout-doorbells", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, _BELL_TABLE_BYTES)
            os.pwrite(fd, _BELL_HEAD.pack(_BELL_MAGIC, _BELL_VERSION, slots), 0)
        except BaseException:
            os.close(fd)
            raise
        bells = Doorbells(fd, slots)
        for k in range(slots):
            bells._fds[k] = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        return bells

    @staticmethod
    def attach(table_fd: int, eventfds: list[int]) -> Doorbells:
        """Map an existing table; eventfds[k] is slot k's eventfd in this process (-1: not
        known here, e.g. a slot added later: set_eventfd). Every fd is dup'ed: the caller
        keeps (and closes) its own. Raises ValueError if it is not a doorbell table."""
        fds = list(eventfds)
        head = os.pread(table_fd, _BELL_HEAD.size, 0)
        if len(head) < _BELL_HEAD.size or os.fstat(table_fd).st_size < _BELL_TABLE_BYTES:
            raise ValueError("not a fanout doorbell table: file too short")
        magic, version, slots = _BELL_HEAD.unpack(head)
        if magic != _BELL_MAGIC or version != _BELL_VERSION:
            raise ValueError(f"not a fanout doorbell table of version {_BELL_VERSION}")
        if not 1 <= slots <= MAX_WORKERS or len(fds) > slots:
            raise ValueError(f"{len(fds)} eventfds for a table of {slots} slots")
        bells = Doorbells(os.dup(table_fd), slots)
        for k, fd in enumerate(fds):
            if fd >= 0:
                bells._fds[k] = os.dup(fd)
        return bells

    def close(self) -> None:
        """Unmap the table and close every fd. Idempotent; later use raises ValueError,
        and rings and ingests that rang these doorbells ring nobody from then on."""
        if self._mm is None:
            return
        self._u64.release()
        self._mm.close()
        self._mm = None
        os.close(self._fd)
        for fd in self._fds:
            if fd >= 0:
                os.close(fd)
        self._fds = [-1] * MAX_WORKERS

    def __del__(self) -> None:
        if getattr(self, "_mm", None) is not None:
            self.close()

    def _check_slot(self, slot: int) -> None:
        if self._mm is None:
            raise ValueError("doorbells are closed")
        if not 0 <= slot < self._slots:
            raise ValueError(f"doorbell slot {slot} out of range 0..{self._slots - 1}")

    def _index(self, slot: int, field: int) -> int:
        return (_BELL_SLOT_BASE + _BELL_SLOT_STRIDE * slot + field) // 8

    @property
    def slots(self) -> int:
        return self._slots

    @property
    def table_fd(self) -> int:
        """The table's memfd (for a child's pass_fds)."""
        self._check_slot(0)
        return self._fd

    @property
    def eventfds(self) -> list[int]:
        """Slot k's eventfd in this process at index k (-1: not known here)."""
        self._check_slot(0)
        return self._fds[:self._slots]

    def set_eventfd(self, slot: int, fd: int) -> None:
        """Learn slot `slot`'s eventfd (dup'ed; the caller keeps its own)."""
        self._check_slot(slot)
        own = os.dup(fd)
        if self._fds[slot] >= 0:
            os.close(self._fds[slot])
        self._fds[slot] = own

    def armed(self, slot: int) -> bool:
        """True while slot `slot`'s worker waits (between Waiter.arm and Waiter.disarm)."""
        self._check_slot(slot)
        return bool(self._u64[self._index(slot, 0)])

    def rang(self, slot: int) -> int:
        """How many times any writer wrote slot `slot`'s eventfd (a syscall each). The twin
        adds without an atomic instruction: two writers ringing one slot at once may count
        one; the compiled core counts exactly."""
        self._check_slot(slot)
        return int(self._u64[self._index(slot, 8)])

    def _set_armed(self, slot: int, armed: bool) -> None:
        self._check_slot(slot)
        self._u64[self._index(slot, 0)] = 1 if armed else 0

    def _ring_for(self, ring_u64: memoryview, seq: int) -> None:
        """ring_doorbells of _core/_core.pxd, for the ring whose header is `ring_u64`, just
        published at `seq`."""
        if seq - ring_u64[_U64_WAKE_SEQ] < ring_u64[_U64_WAKE_BATCH] or self._mm is None:
            return
        ring_u64[_U64_WAKE_SEQ] = seq
        # Store-load: write_seq above before the armed flags below (see _core.pxd).
        _store_load_fence()
        for k in range(self._slots):
            if (self._u64[self._index(k, 0)] and ring_u64[_U64_READERS + k]
                    and self._fds[k] >= 0):
                os.eventfd_write(self._fds[k], 1)
                rang = self._index(k, 8)
                self._u64[rang] = (self._u64[rang] + 1) & 0xFFFF_FFFF_FFFF_FFFF


class Ring:
    """One mount's ring, mapped from a memfd. Build with Ring.create() or Ring.attach()."""

    __slots__ = ("_fd", "_mm", "_view", "_u32", "_u64", "_cap", "_fmt", "_bells")

    def __init__(self, fd: int, capacity: int, doorbells: Doorbells | None = None) -> None:
        """Private: map `fd` (which this Ring then owns). Use create() or attach()."""
        self._mm: mmap.mmap | None = mmap.mmap(fd, HEADER_SIZE + capacity, mmap.MAP_SHARED,
                                               mmap.PROT_READ | mmap.PROT_WRITE)
        self._fd = fd
        self._cap = capacity
        self._view = memoryview(self._mm)
        self._u32 = self._view[:HEADER_SIZE].cast("I")
        self._u64 = self._view[:HEADER_SIZE].cast("Q")
        self._fmt = self._u32[_U32_FORMAT]
        self._bells = doorbells

    @staticmethod
    def create(capacity: int, fmt: int, name: str = "fanout-ring", *,
               doorbells: Doorbells | None = None) -> Ring:
        """A new zeroed ring in a fresh memfd (close-on-exec; pass it with pass_fds/SCM_RIGHTS).
        Writes through this object ring `doorbells` (if given).

        Raises ValueError for a bad capacity or format, OSError if the memfd cannot be made.
        """
        _check_capacity(capacity)
        if fmt not in (FORMAT_GENERIC, FORMAT_OGG):
            raise ValueError(f"unknown ring format {fmt}")
        fd = os.memfd_create(name, os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, HEADER_SIZE + capacity)
            ring = Ring(fd, capacity, doorbells)
        except BaseException:
            os.close(fd)
            raise
        ring._u32[_U32_MAGIC] = _MAGIC
        ring._u32[_U32_VERSION] = _VERSION
        ring._u64[_U64_CAPACITY] = capacity
        ring._u32[_U32_FORMAT] = fmt
        ring._u64[_U64_WAKE_BATCH] = WAKE_BATCH
        ring._fmt = fmt
        ring.set_metadata(INITIAL_METADATA)
        return ring

    @staticmethod
    def attach(fd: int, *, doorbells: Doorbells | None = None) -> Ring:
        """Map an existing ring. The fd is dup'ed: the caller keeps (and closes) its own.
        Writes through this object ring `doorbells` (if given).

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
            return Ring(own, capacity, doorbells)
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
        self._bells = None

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

    # -- wake-ups -----------------------------------------------------------------------

    @property
    def doorbells(self) -> Doorbells | None:
        """The Doorbells this object's writes ring, or None."""
        return self._bells

    @property
    def wake_batch(self) -> int:
        """Bytes between two doorbell checks of the writer (WAKE_BATCH for a new ring)."""
        self._mmap()
        return int(self._u64[_U64_WAKE_BATCH])

    def set_wake_batch(self, batch: int) -> None:
        """Ring readers at most once per `batch` (>= 1) bytes written."""
        self._mmap()
        if batch < 1:
            raise ValueError("wake batch must be >= 1")
        self._u64[_U64_WAKE_BATCH] = batch

    def set_reader(self, worker: int, reading: bool) -> None:
        """Whether worker `worker` serves readers of this ring, i.e. wants its doorbell rung
        when the ring advances (Waiter.watch sets it; a dead worker's is cleared with it)."""
        self._u64[self._counter_index(_U64_READERS, worker)] = 1 if reading else 0

    def readers(self) -> list[int]:
        """The worker slots that serve readers of this ring."""
        self._mmap()
        return [k for k in range(MAX_WORKERS) if self._u64[_U64_READERS + k]]

    # -- audio --------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append a buffer; write_seq is published after every piece of at most GUARD bytes."""
        mm = self._mmap()
        src = memoryview(data).cast("B")
        seq = int(self._u64[_U64_WRITE_SEQ])
        done = 0
        while done < len(src):
            chunk = min(len(src) - done, GUARD)
            off = seq % self._cap
            first = min(chunk, self._cap - off)
            mm[HEADER_SIZE + off:HEADER_SIZE + off + first] = src[done:done + first]
            mm[HEADER_SIZE:HEADER_SIZE + chunk - first] = src[done + first:done + chunk]
            done += chunk
            seq += chunk
            self._publish(seq)

    def _publish(self, seq: int) -> None:
        """ring_publish of _core/_core.pxd: write_seq, then the doorbells that are due.

        The compiled writer fences after this store so that the next piece's bytes, which
        overwrite what a reader may still be sending, never become visible before it (the
        guard rule's other half). CPython emits no fence, and needs none here: on x86-64,
        the only CPU this twin runs on, stores become visible in program order."""
        self._u64[_U64_WRITE_SEQ] = seq
        if self._bells is not None:
            self._bells._ring_for(self._u64, seq)

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
            # A copying sendmsg, never sendfile, splice or MSG_ZEROCOPY: the guard check
            # below needs the kernel to have copied the bytes before the writer may
            # overwrite them (the compiled send_many says more).
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


# -- wake-ups: the reader side ------------------------------------------------------------

class Waiter:
    """Worker `slot`'s one waiting point for all the rings it serves (fanout._core's theory
    of operation, "Wake-ups"; the compiled Waiter's docstring shows the loop).

    Raises ValueError if `slot` is not a slot of `doorbells` with an eventfd here.
    """

    __slots__ = ("_bells", "_slot", "_watched")

    def __init__(self, doorbells: Doorbells, slot: int) -> None:
        doorbells._check_slot(slot)
        if doorbells._fds[slot] < 0:
            raise ValueError(f"no eventfd for doorbell slot {slot} in this process")
        self._bells = doorbells
        self._slot = slot
        # Ring -> (tag, write_seq of its last pass). due() lists tags in no promised order.
        self._watched: dict[Ring, tuple[object, int]] = {}
        self.disarm()              # a dead worker of this slot may have left it armed

    @property
    def fd(self) -> int:
        """The eventfd to wait on (readable once rung); owned by the Doorbells."""
        self._bells._check_slot(self._slot)
        return self._bells._fds[self._slot]

    def __len__(self) -> int:
        return len(self._watched)

    def watch(self, ring: Ring, tag: object, passed: int) -> None:
        """Serve `ring` (due() lists it as `tag`), last passed at write_seq `passed`; its
        writer rings this worker from now on. Watching it again updates tag and pass."""
        ring.set_reader(self._slot, True)
        self._watched[ring] = (tag, passed)

    def unwatch(self, ring: Ring) -> None:
        """Stop serving `ring` (no-op if not watched); its writer stops ringing us for it."""
        if self._watched.pop(ring, None) is not None and ring._mm is not None:
            ring.set_reader(self._slot, False)

    def passed(self, ring: Ring, seq: int) -> None:
        """Record a pass over `ring` that sent up to write_seq `seq`. KeyError if not
        watched."""
        self._watched[ring] = (self._watched[ring][0], seq)

    def due(self, minimum: int | None = None) -> list[object]:
        """Tags of the watched rings whose write_seq is at least `minimum` bytes past their
        last pass (None: the ring's own wake_batch; 1: any unsent byte). Closed rings are
        never due."""
        if minimum is not None and minimum < 1:
            raise ValueError("minimum must be >= 1")
        out = []
        for ring, (tag, seq) in self._watched.items():
            if ring._mm is None:
                continue
            need = minimum or int(ring._u64[_U64_WAKE_BATCH])
            if ring.write_seq - seq >= need:
                out.append(tag)
        return out

    def arm(self) -> list[object]:
        """Arm the doorbell, then re-check: the tags due now. If there are any, the doorbell
        is disarmed again and the caller serves them instead of waiting; if none, every
        advance of wake_batch from here on rings the eventfd."""
        self._bells._set_armed(self._slot, True)
        # Store-load: the armed flag above before the write_seq loads of due().
        _store_load_fence()
        ready = self.due()
        if ready:
            self._bells._set_armed(self._slot, False)
        return ready

    def disarm(self) -> int:
        """Stop being rung and drain the eventfd; returns how many rings it had counted."""
        self._bells._set_armed(self._slot, False)
        try:
            return os.eventfd_read(self._bells._fds[self._slot])
        except BlockingIOError:
            return 0
