# cython: language_level=3
"""fanout._core: the shared-memory ring and the listener sender (the production data plane).

Theory of operation (the layout and rules are in docs/ARCHITECTURE.md, "The ring"):

- A Ring is a memfd mapped MAP_SHARED by the supervisor and every worker. Exactly one
  process writes audio into it; positions are absolute u64 sequences, the byte at `s`
  lives at data[s % capacity]. The writer copies at most GUARD bytes, then release-stores
  `write_seq` and fences before it copies more (ring_publish in _core.pxd says why);
  readers acquire-load it. A reader that has sent bytes starting at `p` re-checks
  `write_seq + GUARD - capacity <= p` afterwards: if that fails the writer may have been
  overwriting them and the listener is dropped (never a torn byte on the wire).
- The capacity is what the mount needs, in whole pages (ring_capacity_for), not a power
  of two: the modulo costs a division per copied piece, which measured as nothing next
  to the copy and the syscall around it.
- ICY metadata and Ogg header pages are small blocks guarded by seqlocks. The header block
  also holds the sequence where its link's data begins, so that a listener joining a
  chained Ogg stream gets the header pages of the link it starts in (start_point).
- send_many() makes one pass over one mount's listeners: per listener, up to 32 iovecs
  (pending prefix, a partly sent ICY block, ring data split at the wrap and at every
  metaint boundary, ICY blocks) and one non-blocking sendmsg. EAGAIN is a normal result.
  Partial sends are accounted piece by piece so the next pass resumes at the exact byte.

Wake-ups (Doorbells, Waiter; the worker's pump waits on them instead of a fixed tick):

- One doorbell per worker slot: an eventfd (made by the supervisor, inherited by every
  worker, so any writer can ring any worker) and, in a shared table, an `armed` flag that
  only that worker writes and a `rang` count of eventfd writes. A worker has one waiting
  point for all its mounts: its eventfd, polled by its gevent hub like any socket.
- Per ring, in the header: `readers[k]` (worker k serves this ring: set by its Waiter),
  `wake_batch` and `wake_seq`, the write_seq at the writer's last doorbell check.
- Writer (ring_publish, after each publication): once write_seq is wake_batch past
  wake_seq, it sets wake_seq, fences (store-load) and writes the eventfd of every worker
  that is armed and reads this ring. Otherwise it does nothing: no fence, no syscall; and
  no syscall either while no reader of the ring is armed.
- Reader (Waiter): arm (flag, store-load fence), re-check every watched ring, and only if
  none advanced by its wake_batch since its last pass, wait on the eventfd; then disarm
  (flag cleared, eventfd drained) and take the due rings. No lost wake-up: if the ring
  moves wake_batch past what the re-check saw, the writer checks at a write_seq the
  re-check did not see, so by the two fences it sees the armed flag and rings.
- Latency is the caller's: a ring gets a doorbell per wake_batch bytes, so a pump that
  also wants a pass within a delay of its last one sets a timer for that (due(1) lists
  the rings with any unsent byte); a ring whose source is silent then costs nothing.

fanout/coreref.py is the pure-Python twin of this module (same names, same layout); the
tests run against both and check they interoperate on the same memfd.
"""
import os
import struct

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.pycapsule cimport PyCapsule_New
from libc.errno cimport EAGAIN, EINTR, errno
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy, memset
from posix.mman cimport MAP_FAILED, MAP_SHARED, PROT_READ, PROT_WRITE, mmap, munmap
from posix.uio cimport iovec
from posix.unistd cimport close as c_close

# The C externs and header offsets (_core/_core.pxd; see there why it is cimported by name).
from _core cimport *

HEADER_SIZE = HEADER_BYTES
GUARD = GUARD_BYTES
PAGE = CAPACITY_UNIT
MIN_CAPACITY = MIN_CAPACITY_BYTES
WAKE_BATCH = DEFAULT_WAKE_BATCH
MAX_WORKERS = WORKER_SLOTS
SYNC_SLOTS = SYNC_TABLE_SLOTS
SYNC_MIN_GAP = 4096          # MP3: at most one sync point per this many bytes (ingest's rule)

FORMAT_GENERIC = RING_FORMAT_GENERIC
FORMAT_OGG = RING_FORMAT_OGG
FLAG_LIVE = 1
FLAG_ENDED = 2

OK = 0
WOULD_BLOCK = 1
LAPPED = 2
ERROR = 3

MAX_META_BLOCK = META_BLOCK_MAX
MAX_STREAM_HEADER = STREAM_HEADER_MAX
INITIAL_METADATA = b"\x01StreamTitle='';\x00"

cdef enum:
    ST_WOULD_BLOCK = 1
    ST_LAPPED = 2
    ST_ERROR = 3

# A seqlock writer holds the block odd for a few microseconds; if it stays odd this long
# the writer died mid-update, and failing loudly beats spinning a worker forever.
cdef enum:
    SEQLOCK_SPINS = 1 << 20
    SEQLOCK_BUSY_SPINS = 64      # then yield the CPU so a descheduled writer can finish

cdef char EMPTY_META = 0         # the one-byte "no change" ICY block

_HEAD = struct.Struct("<IIQ")    # magic, version, capacity
_BELL_HEAD = struct.Struct("<III")  # magic, version, slots


class LappedError(Exception):
    """Ring.read() of bytes that are no longer (or may no longer be) in the ring."""


def ring_capacity_for(queue_size, burst_size):
    """The data area a mount needs, rounded up to whole pages: max(queue_size, burst_size)
    + 2*GUARD. A listener may lag queue_size bytes, its burst included (Icecast's queue
    holds the burst too); one GUARD is what the writer may hold unpublished, the other lets
    the writer move on while a listener's send is in the kernel. The larger of the two
    sizes: a burst over queue-size still starts inside the ring."""
    if queue_size < 0 or burst_size < 0:
        raise ValueError("queue_size and burst_size must be >= 0")
    need = max(queue_size, burst_size) + 2 * GUARD_BYTES
    return -(-need // CAPACITY_UNIT) * CAPACITY_UNIT


def _check_capacity(capacity):
    # Whole pages: memory comes by the page, so a capacity between two would cost the
    # next one anyway.
    if capacity < MIN_CAPACITY_BYTES or capacity % CAPACITY_UNIT:
        raise ValueError(f"ring capacity must be a multiple of {CAPACITY_UNIT} bytes and "
                         f">= {MIN_CAPACITY_BYTES}, got {capacity}")


cdef class Doorbells:
    """The workers' doorbells (the theory of operation above, "Wake-ups"): a shared table
    and one eventfd per worker slot. Build with Doorbells.create() (the supervisor, before
    it starts workers) or Doorbells.attach() (a worker, from the inherited fds)."""

    cdef Bells c
    cdef int _table_fd

    def __cinit__(self):
        cdef int k
        self.c.table = NULL
        self.c.slots = 0
        for k in range(WORKER_SLOTS):
            self.c.fds[k] = -1
        self._table_fd = -1

    def __init__(self, *args, **kwargs):
        raise TypeError("use Doorbells.create() or Doorbells.attach()")

    def __dealloc__(self):
        self.release()

    @staticmethod
    def create(int slots):
        """A zeroed table in a fresh memfd and `slots` eventfds, all close-on-exec (pass
        them with pass_fds) and the eventfds non-blocking. Raises ValueError unless
        1 <= slots <= MAX_WORKERS, OSError if the kernel refuses an fd."""
        cdef Doorbells bells
        cdef int k
        if not 1 <= slots <= WORKER_SLOTS:
            raise ValueError(f"doorbell slots must be 1..{WORKER_SLOTS}, got {slots}")
        bells = Doorbells.__new__(Doorbells)
        fd = os.memfd_create("fanout-doorbells", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, BELL_TABLE_BYTES)
        except BaseException:
            os.close(fd)
            raise
        bells.map_table(fd)
        u32_at(bells.c.table, BELL_OFF_MAGIC)[0] = BELL_MAGIC
        u32_at(bells.c.table, BELL_OFF_VERSION)[0] = BELL_VERSION
        u32_at(bells.c.table, BELL_OFF_SLOTS)[0] = slots
        bells.c.slots = slots
        for k in range(slots):
            bells.c.fds[k] = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        return bells

    @staticmethod
    def attach(int table_fd, eventfds):
        """Map an existing table; eventfds[k] is slot k's eventfd in this process (-1: not
        known here, e.g. a slot added later: set_eventfd). Every fd is dup'ed: the caller
        keeps (and closes) its own. Raises ValueError if it is not a doorbell table."""
        cdef Doorbells bells
        fds = list(eventfds)
        head = os.pread(table_fd, _BELL_HEAD.size, 0)
        if len(head) < _BELL_HEAD.size or os.fstat(table_fd).st_size < BELL_TABLE_BYTES:
            raise ValueError("not a fanout doorbell table: file too short")
        magic, version, slots = _BELL_HEAD.unpack(head)
        if magic != BELL_MAGIC or version != BELL_VERSION:
            raise ValueError(f"not a fanout doorbell table of version {BELL_VERSION}")
        if not 1 <= slots <= WORKER_SLOTS or len(fds) > slots:
            raise ValueError(f"{len(fds)} eventfds for a table of {slots} slots")
        bells = Doorbells.__new__(Doorbells)
        bells.map_table(os.dup(table_fd))
        bells.c.slots = slots
        for k, fd in enumerate(fds):
            if fd >= 0:
                bells.c.fds[k] = os.dup(fd)
        return bells

    cdef int map_table(self, int fd) except -1:
        """Map the table memfd `fd`, which this object then owns (closed on failure)."""
        cdef void *p = mmap(NULL, BELL_TABLE_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        cdef int err
        if p == MAP_FAILED:
            err = errno
            os.close(fd)
            raise OSError(err, os.strerror(err))
        self.c.table = <char *>p
        self._table_fd = fd
        return 0

    cdef void release(self) noexcept:
        cdef int k
        if self.c.table != NULL:
            munmap(self.c.table, BELL_TABLE_BYTES)
            self.c.table = NULL
        if self._table_fd >= 0:
            c_close(self._table_fd)
            self._table_fd = -1
        for k in range(WORKER_SLOTS):
            if self.c.fds[k] >= 0:
                c_close(self.c.fds[k])
                self.c.fds[k] = -1

    def close(self):
        """Unmap the table and close every fd. Idempotent; later use raises ValueError,
        and rings and ingests that rang these doorbells ring nobody from then on."""
        self.release()

    cdef int check_slot(self, slot) except -1:
        if self.c.table == NULL:
            raise ValueError("doorbells are closed")
        if not 0 <= slot < self.c.slots:
            raise ValueError(f"doorbell slot {slot} out of range 0..{self.c.slots - 1}")
        return 0

    @property
    def slots(self):
        return self.c.slots

    @property
    def table_fd(self):
        """The table's memfd (for a child's pass_fds)."""
        self.check_slot(0)
        return self._table_fd

    @property
    def eventfds(self):
        """Slot k's eventfd in this process at index k (-1: not known here)."""
        self.check_slot(0)
        return [self.c.fds[k] for k in range(self.c.slots)]

    def set_eventfd(self, slot, int fd):
        """Learn slot `slot`'s eventfd (dup'ed; the caller keeps its own)."""
        self.check_slot(slot)
        own = os.dup(fd)
        if self.c.fds[slot] >= 0:
            os.close(self.c.fds[slot])
        self.c.fds[slot] = own

    def armed(self, slot):
        """True while slot `slot`'s worker waits (between Waiter.arm and Waiter.disarm)."""
        self.check_slot(slot)
        return fo_load_acquire_u64(bell_word(self.c.table, slot, BELL_ARMED)) != 0

    def rang(self, slot):
        """How many times any writer wrote slot `slot`'s eventfd (a syscall each)."""
        self.check_slot(slot)
        return fo_load_relaxed_u64(bell_word(self.c.table, slot, BELL_RANG))

    def _capsule(self):
        """This object's C view, for fanout._ingest (keep the Doorbells alive meanwhile)."""
        self.check_slot(0)
        return PyCapsule_New(&self.c, b"fanout._core.Bells", NULL)   # name: ingest.pyx


cdef class Ring:
    """One mount's ring, mapped from a memfd. Build with Ring.create() or Ring.attach()."""

    cdef char *base           # start of the mapping (the header); NULL once closed
    cdef char *data           # base + HEADER_SIZE
    cdef size_t map_len
    cdef uint64_t cap
    cdef uint32_t _fmt
    cdef int _fd
    cdef Doorbells _bells     # rung by this process's writes; None: no doorbells
    cdef Bells *bells         # its C view, or NULL

    def __cinit__(self):
        self.base = NULL
        self._fd = -1
        self.bells = NULL

    def __init__(self, *args, **kwargs):
        raise TypeError("use Ring.create() or Ring.attach()")

    cdef void use_doorbells(self, Doorbells doorbells) noexcept:
        self._bells = doorbells
        self.bells = &doorbells.c if doorbells is not None else NULL

    def __dealloc__(self):
        if self.base != NULL:
            munmap(self.base, self.map_len)
            self.base = NULL
        if self._fd >= 0:
            c_close(self._fd)
            self._fd = -1

    @staticmethod
    def create(capacity, int fmt, name="fanout-ring", *, Doorbells doorbells=None):
        """A new zeroed ring in a fresh memfd (close-on-exec; pass it with pass_fds/SCM_RIGHTS).
        Writes through this object ring `doorbells` (if given).

        Raises ValueError for a bad capacity or format, OSError if the memfd cannot be made.
        """
        cdef Ring ring
        _check_capacity(capacity)
        if fmt != FORMAT_GENERIC and fmt != FORMAT_OGG:
            raise ValueError(f"unknown ring format {fmt}")
        fd = os.memfd_create(name, os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, HEADER_BYTES + capacity)
            ring = Ring.__new__(Ring)
            ring.map_fd(fd, capacity)
        except BaseException:
            os.close(fd)
            raise
        u32_at(ring.base, OFF_MAGIC)[0] = RING_MAGIC
        u32_at(ring.base, OFF_VERSION)[0] = LAYOUT_VERSION
        u64_at(ring.base, OFF_CAPACITY)[0] = capacity
        u32_at(ring.base, OFF_FORMAT)[0] = fmt
        u64_at(ring.base, OFF_WAKE_BATCH)[0] = DEFAULT_WAKE_BATCH
        ring._fmt = fmt
        ring.use_doorbells(doorbells)
        ring.set_metadata(INITIAL_METADATA)
        return ring

    @staticmethod
    def attach(int fd, *, Doorbells doorbells=None):
        """Map an existing ring. The fd is dup'ed: the caller keeps (and closes) its own.
        Writes through this object ring `doorbells` (if given).

        Raises ValueError if the fd does not hold a ring of this layout version.
        """
        cdef Ring ring
        head = os.pread(fd, _HEAD.size, 0)
        if len(head) < _HEAD.size:
            raise ValueError("not a fanout ring: file too short")
        magic, version, capacity = _HEAD.unpack(head)
        if magic != RING_MAGIC:
            raise ValueError(f"not a fanout ring: bad magic {magic:#010x}")
        if version != LAYOUT_VERSION:
            raise ValueError(f"ring layout version {version}, expected {LAYOUT_VERSION}")
        _check_capacity(capacity)
        if os.fstat(fd).st_size < HEADER_BYTES + capacity:
            raise ValueError("ring file shorter than its header says")
        own = os.dup(fd)
        try:
            ring = Ring.__new__(Ring)
            ring.map_fd(own, capacity)
        except BaseException:
            os.close(own)
            raise
        ring._fmt = u32_at(ring.base, OFF_FORMAT)[0]
        ring.use_doorbells(doorbells)
        return ring

    cdef int map_fd(self, int fd, uint64_t cap) except -1:
        cdef size_t length = HEADER_BYTES + cap
        cdef void *p = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        cdef int err
        if p == MAP_FAILED:
            err = errno
            raise OSError(err, os.strerror(err))
        self.base = <char *>p
        self.data = self.base + HEADER_BYTES
        self.map_len = length
        self.cap = cap
        self._fd = fd
        return 0

    cdef int check_open(self) except -1:
        if self.base == NULL:
            raise ValueError("ring is closed")
        return 0

    cdef uint64_t load_write_seq(self) noexcept nogil:
        return fo_load_acquire_u64(u64_at(self.base, OFF_WRITE_SEQ))

    cdef bint is_lapped(self, uint64_t pos, uint64_t wseq) noexcept nogil:
        # pos < wseq + GUARD - cap, written so that nothing underflows.
        return pos + self.cap < wseq + GUARD_BYTES

    def close(self):
        """Unmap and close our fd. Idempotent; any later use raises ValueError."""
        if self.base != NULL:
            munmap(self.base, self.map_len)
            self.base = NULL
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.use_doorbells(None)

    @property
    def fd(self):
        self.check_open()
        return self._fd

    @property
    def capacity(self):
        self.check_open()
        return self.cap

    @property
    def fmt(self):
        self.check_open()
        return self._fmt

    @property
    def write_seq(self):
        self.check_open()
        return self.load_write_seq()

    @property
    def flags(self):
        self.check_open()
        return fo_load_acquire_u32(u32_at(self.base, OFF_FLAGS))

    def set_flags(self, uint32_t flags):
        self.check_open()
        fo_store_release_u32(u32_at(self.base, OFF_FLAGS), flags)

    # -- wake-ups -----------------------------------------------------------------------

    @property
    def doorbells(self):
        """The Doorbells this object's writes ring, or None."""
        return self._bells

    @property
    def wake_batch(self):
        """Bytes between two doorbell checks of the writer (WAKE_BATCH for a new ring)."""
        self.check_open()
        return fo_load_relaxed_u64(u64_at(self.base, OFF_WAKE_BATCH))

    def set_wake_batch(self, batch):
        """Ring readers at most once per `batch` (>= 1) bytes written."""
        self.check_open()
        if batch < 1:
            raise ValueError("wake batch must be >= 1")
        fo_store_relaxed_u64(u64_at(self.base, OFF_WAKE_BATCH), batch)

    def set_reader(self, worker, bint reading):
        """Whether worker `worker` serves readers of this ring, i.e. wants its doorbell rung
        when the ring advances (Waiter.watch sets it; a dead worker's is cleared with it)."""
        cdef uint64_t *flag = self.counter(OFF_READERS, worker)
        fo_store_release_u64(flag, 1 if reading else 0)

    def readers(self):
        """The worker slots that serve readers of this ring."""
        self.check_open()
        return [k for k in range(WORKER_SLOTS)
                if fo_load_relaxed_u64(u64_at(self.base, OFF_READERS + 8 * k))]

    # -- audio --------------------------------------------------------------------------

    def write(self, data):
        """Append a buffer; write_seq is published after every piece of at most GUARD bytes."""
        cdef Py_buffer view
        cdef const unsigned char *src
        cdef uint64_t seq, chunk, left
        self.check_open()
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            src = <const unsigned char *>view.buf
            left = view.len
            seq = fo_load_relaxed_u64(u64_at(self.base, OFF_WRITE_SEQ))   # the only writer
            while left > 0:
                chunk = GUARD_BYTES if left > GUARD_BYTES else left
                ring_put(self.data, self.cap, seq, src, chunk)
                src += chunk
                left -= chunk
                seq += chunk
                # Publish, and fence before the next chunk's copy (see ring_publish).
                ring_publish(self.base, seq, self.bells)
        finally:
            PyBuffer_Release(&view)

    def read(self, seq, Py_ssize_t n):
        """Copy of [seq, seq+n) clipped to write_seq (b"" if seq is at or past it).

        Raises LappedError if seq is (or, after the copy, was) too old to be trusted.
        """
        cdef uint64_t s, wseq, count, off, first
        cdef bytes out
        cdef char *dst
        self.check_open()
        if seq < 0 or n < 0:
            raise ValueError("seq and n must be >= 0")
        s = seq
        wseq = self.load_write_seq()
        if self.is_lapped(s, wseq):
            raise LappedError(f"sequence {s} is no longer in the ring (write_seq {wseq})")
        if s >= wseq or n == 0:
            return b""
        count = wseq - s
        if count > <uint64_t>n:
            count = n
        out = PyBytes_FromStringAndSize(NULL, count)
        dst = PyBytes_AS_STRING(out)
        off = s % self.cap
        first = self.cap - off
        if first > count:
            first = count
        memcpy(dst, self.data + off, first)
        memcpy(dst + first, self.data, count - first)
        fo_fence_acquire()
        wseq = self.load_write_seq()
        if self.is_lapped(s, wseq):
            raise LappedError(f"sequence {s} was overwritten during the read (write_seq {wseq})")
        return out

    # -- sync points --------------------------------------------------------------------

    def add_sync_point(self, seq):
        """Record where a listener may start. Sequences not above the last one are ignored."""
        self.check_open()
        if seq < 0:
            raise ValueError("seq must be >= 0")
        ring_add_sync(self.base, seq)

    def start_position(self, burst_size):
        """Where a new listener starts: the oldest sync point within burst_size of write_seq
        that is safely inside the ring, else the newest safe sync point, else write_seq."""
        self.check_open()
        if burst_size < 0:
            raise ValueError("burst_size must be >= 0")
        return self.start_from(burst_size, 0, False)

    cdef uint64_t start_from(self, uint64_t burst_size, uint64_t link_start,
                             bint linked) noexcept nogil:
        """start_position, ignoring sync points before `link_start` if `linked`; then
        link_start itself (a page start) is the fallback before write_seq."""
        cdef uint64_t wseq, count, i, s, floor_burst, newest = 0
        cdef bint have_newest = False
        wseq = self.load_write_seq()
        floor_burst = wseq - burst_size if wseq > burst_size else 0
        count = fo_load_acquire_u64(u64_at(self.base, OFF_SYNC_COUNT))
        i = count - SYNC_TABLE_SLOTS if count > SYNC_TABLE_SLOTS else 0
        while i < count:
            s = fo_load_relaxed_u64(sync_slot(self.base, i))
            i += 1
            if s > wseq:           # recorded ahead of the bytes it points at
                break
            if self.is_lapped(s, wseq) or (linked and s < link_start):
                continue
            if s >= floor_burst:
                return s
            newest = s
            have_newest = True
        if have_newest:
            return newest
        if linked and link_start <= wseq and not self.is_lapped(link_start, wseq):
            return link_start
        return wseq

    def start_point(self, burst_size):
        """(position, header pages) for a new listener: where it starts and what it must be
        sent first.

        The position is never before the `link_start` of the last `set_stream_header`. Ogg
        rings: the stored header set and the position come from one consistent view, so
        the position is never before the first data page of the link that header set
        belongs to (a chained stream's earlier links need other headers). Before any header
        set was published, a listener starts at sequence 0 while it is still in the ring:
        the header pages are there, in the stream itself. Generic rings: an empty header
        set marks a seam (a relay that reconnected to another stream): newcomers start
        after it, never with a burst that runs across it.
        """
        cdef uint64_t gen = 0, link_start = 0, pos
        cdef bytes pages
        cdef bint ogg = self._fmt == RING_FORMAT_OGG
        self.check_open()
        if burst_size < 0:
            raise ValueError("burst_size must be >= 0")
        while True:
            pages = self.seqlock_read(OFF_HDR_GEN, OFF_HDR_LEN, OFF_STREAM_HEADER,
                                      STREAM_HEADER_MAX, &gen, OFF_HDR_START, &link_start)
            if ogg and gen == 0 and not self.is_lapped(0, self.load_write_seq()):
                pos = 0
            else:
                pos = self.start_from(burst_size, link_start, gen != 0)
            fo_fence_acquire()
            # A header set published meanwhile may come with sync points of its own link,
            # which the search above could have picked: look again.
            if fo_load_relaxed_u64(u64_at(self.base, OFF_HDR_GEN)) == gen:
                return pos, pages

    # -- metadata and Ogg headers (seqlocks) --------------------------------------------

    cdef bytes seqlock_read(self, Py_ssize_t gen_off, Py_ssize_t len_off, Py_ssize_t area_off,
                            Py_ssize_t area_max, uint64_t *gen_out, Py_ssize_t extra_off=0,
                            uint64_t *extra_out=NULL):
        """A consistent copy of a seqlocked block (and of the u64 at `extra_off`, if not 0)."""
        cdef uint64_t *gen_p = u64_at(self.base, gen_off)
        cdef uint64_t g1, g2, extra = 0
        cdef Py_ssize_t n, attempt
        cdef bytes out
        for attempt in range(SEQLOCK_SPINS):
            g1 = fo_load_acquire_u64(gen_p)
            if g1 & 1:
                if attempt >= SEQLOCK_BUSY_SPINS:
                    sched_yield()
                continue
            n = fo_load_acquire_u32(u32_at(self.base, len_off))
            if n > area_max:       # a torn length; the generation check below rejects it
                n = area_max
            out = PyBytes_FromStringAndSize(self.base + area_off, n)
            if extra_off:
                extra = fo_load_relaxed_u64(u64_at(self.base, extra_off))
            fo_fence_acquire()
            g2 = fo_load_relaxed_u64(gen_p)
            if g1 == g2:
                gen_out[0] = g1
                if extra_off:
                    extra_out[0] = extra
                return out
        raise RuntimeError("ring seqlock stayed busy: its writer died mid-update?")

    def set_metadata(self, block):
        """Publish a full ICY block (length byte included). ValueError if malformed."""
        cdef bytes b = bytes(block)
        self.check_open()
        if len(b) == 0 or len(b) > META_BLOCK_MAX or len(b) != 1 + 16 * b[0]:
            raise ValueError(f"not an ICY metadata block of at most {META_BLOCK_MAX} bytes "
                             f"(got {len(b)} bytes)")
        seqlock_write(self.base, OFF_META_GEN, OFF_META_LEN, OFF_META_BLOCK,
                      <const unsigned char *>PyBytes_AS_STRING(b), len(b), 0, 0)

    def metadata(self):
        """(meta_gen, block): a consistent copy of the current ICY block."""
        cdef uint64_t gen = 0
        self.check_open()
        block = self.seqlock_read(OFF_META_GEN, OFF_META_LEN, OFF_META_BLOCK, META_AREA, &gen)
        return gen, block

    def set_stream_header(self, data, link_start):
        """Publish the Ogg header pages a joining listener needs first, with the sequence of
        the first data page of their link (already written). ValueError if too big: the
        ingest never hands over a set larger than MAX_STREAM_HEADER."""
        cdef bytes b = bytes(data)
        self.check_open()
        if len(b) > STREAM_HEADER_MAX:
            raise ValueError(f"stream header of {len(b)} bytes exceeds {STREAM_HEADER_MAX}")
        if link_start < 0:
            raise ValueError("link_start must be >= 0")
        header_write(self.base, <const unsigned char *>PyBytes_AS_STRING(b), len(b), link_start)

    def stream_header(self):
        """(hdr_gen, header bytes): a consistent copy (b"" before any is set)."""
        cdef uint64_t gen = 0
        self.check_open()
        data = self.seqlock_read(OFF_HDR_GEN, OFF_HDR_LEN, OFF_STREAM_HEADER,
                                 STREAM_HEADER_MAX, &gen)
        return gen, data

    # -- per-worker counters ------------------------------------------------------------

    cdef uint64_t *counter(self, Py_ssize_t table_off, worker) except NULL:
        self.check_open()
        if not 0 <= worker < WORKER_SLOTS:
            raise ValueError(f"worker slot {worker} out of range 0..{WORKER_SLOTS - 1}")
        return u64_at(self.base, table_off + 8 * <Py_ssize_t>worker)

    def set_listener_count(self, worker, n):
        if n < 0:
            raise ValueError("listener count must be >= 0")
        fo_store_relaxed_u64(self.counter(OFF_LISTENERS, worker), n)

    def listener_counts(self):
        self.check_open()
        return [fo_load_relaxed_u64(u64_at(self.base, OFF_LISTENERS + 8 * i))
                for i in range(WORKER_SLOTS)]

    def listener_count(self):
        return sum(self.listener_counts())

    def add_bytes_sent(self, worker, n):
        if n < 0:
            raise ValueError("byte count must be >= 0")
        fo_add_relaxed_u64(self.counter(OFF_BYTES_SENT, worker), n)

    def bytes_sent(self):
        cdef uint64_t total = 0
        cdef Py_ssize_t i
        self.check_open()
        for i in range(WORKER_SLOTS):
            total += fo_load_relaxed_u64(u64_at(self.base, OFF_BYTES_SENT + 8 * i))
        return total

    def __repr__(self):
        if self.base == NULL:
            return "<Ring closed>"
        return (f"<Ring fd={self._fd} capacity={self.cap} fmt={self._fmt} "
                f"write_seq={self.load_write_seq()}>")


cdef class Listener:
    """One listener's send state. The caller owns the socket; the sender never closes it."""

    cdef public int fd
    cdef public uint64_t pos
    cdef public uint64_t lag_limit
    cdef public uint64_t metaint
    cdef public uint64_t meta_left
    cdef public uint64_t meta_gen
    cdef public uint64_t sent
    cdef public uint64_t audio_sent
    cdef public object tag
    cdef bytes prefix          # response head etc.; None once fully sent
    cdef Py_ssize_t prefix_off
    cdef bytes pending_meta    # ICY block cut by a partial send; None when nothing pending
    cdef Py_ssize_t pending_off

    def __init__(self, int fd, pos, lag_limit, metaint=0, prefix=b""):
        self.fd = fd
        self.pos = pos
        self.lag_limit = lag_limit
        self.metaint = metaint
        self.meta_left = metaint
        self.meta_gen = 0
        self.sent = 0
        self.audio_sent = 0
        self.tag = None
        self.prefix = bytes(prefix) or None
        self.prefix_off = 0
        self.pending_meta = None
        self.pending_off = 0

    @property
    def prefix_left(self):
        if self.prefix is None:
            return 0
        return len(self.prefix) - self.prefix_off

    def __repr__(self):
        return (f"<Listener fd={self.fd} pos={self.pos} sent={self.sent} "
                f"metaint={self.metaint} tag={self.tag!r}>")


cdef uint64_t account_sent(Listener lis, iovec *iov, unsigned char *kind, Py_ssize_t n,
                           Py_ssize_t sent, bytes block, uint64_t gen) noexcept:
    """Apply a (possibly partial) send of `sent` bytes over the pieces; returns ring bytes."""
    cdef uint64_t ring_sent = 0
    cdef Py_ssize_t i, k, length, left = sent
    for i in range(n):
        length = iov[i].iov_len
        k = left if left < length else length
        left -= k
        if kind[i] == PIECE_PREFIX:
            lis.prefix_off += k
            if lis.prefix_off == len(lis.prefix):
                lis.prefix = None
                lis.prefix_off = 0
        elif kind[i] == PIECE_PENDING_META:
            lis.pending_off += k
            if lis.pending_off == len(lis.pending_meta):
                lis.pending_meta = None
                lis.pending_off = 0
        elif kind[i] == PIECE_RING:
            lis.pos += k
            ring_sent += k
            if lis.metaint != 0:
                lis.meta_left -= k
        else:
            if k == 0:             # not started: rebuilt next pass with the then-current block
                break
            lis.meta_left = lis.metaint
            if kind[i] == PIECE_META_FULL:
                lis.meta_gen = gen
                if k < length:     # its rest goes first next pass, even if metadata changes
                    lis.pending_meta = block
                    lis.pending_off = k
        if k < length:
            break
    lis.sent += sent
    lis.audio_sent += ring_sent
    return ring_sent


def send_many(Ring ring not None, list listeners not None, Py_ssize_t budget):
    """One non-blocking pass over `listeners`; see docs/ARCHITECTURE.md, "The sender".
    One copying sendmsg per listener, never sendfile or zero-copy (why: at the call).

    Returns [(listener, status, errno)] for the listeners that are not simply caught up:
    WOULD_BLOCK (errno EAGAIN, also after a partial send), LAPPED (errno 0; nothing sent if
    detected before the send) or ERROR (the sendmsg errno). Accounting on the ring
    (add_bytes_sent) is the caller's job.
    """
    cdef iovec iov[IOV_PER_SEND]
    cdef unsigned char kind[IOV_PER_SEND]
    cdef msghdr msg
    cdef Listener lis
    cdef list problems = []
    cdef bytes block = None
    cdef uint64_t gen = 0
    cdef bint have_meta = False
    cdef uint64_t wseq, start, p, take, chunk, off, left, lgen
    cdef Py_ssize_t n, total, ret
    cdef int err
    if budget < 0:
        raise ValueError("budget must be >= 0")
    ring.check_open()
    memset(&msg, 0, sizeof(msg))
    msg.msg_iov = iov
    for obj in listeners:
        if not isinstance(obj, Listener):      # a C type check; also keeps None out
            raise TypeError(f"expected a Listener, got {type(obj).__name__}")
        lis = <Listener>obj
        wseq = ring.load_write_seq()
        start = lis.pos
        if wseq > start and (wseq - start > lis.lag_limit or ring.is_lapped(start, wseq)):
            problems.append((lis, ST_LAPPED, 0))
            continue

        # Build the iovecs: prefix, then a cut ICY block, then ring bytes with ICY blocks.
        n = 0
        total = 0
        if lis.prefix is not None:
            iov[n].iov_base = PyBytes_AS_STRING(lis.prefix) + lis.prefix_off
            iov[n].iov_len = len(lis.prefix) - lis.prefix_off
            kind[n] = PIECE_PREFIX
            total += iov[n].iov_len
            n += 1
        if lis.pending_meta is not None:
            iov[n].iov_base = PyBytes_AS_STRING(lis.pending_meta) + lis.pending_off
            iov[n].iov_len = len(lis.pending_meta) - lis.pending_off
            kind[n] = PIECE_PENDING_META
            total += iov[n].iov_len
            n += 1
        take = wseq - start if wseq > start else 0
        if take > <uint64_t>budget:
            take = budget
        p = start
        left = lis.meta_left
        lgen = lis.meta_gen
        while True:
            if lis.metaint != 0 and left == 0:
                if n == IOV_PER_SEND:
                    break
                if not have_meta:
                    block = ring.seqlock_read(OFF_META_GEN, OFF_META_LEN, OFF_META_BLOCK,
                                              META_AREA, &gen)
                    have_meta = True
                if lgen != gen:
                    iov[n].iov_base = PyBytes_AS_STRING(block)
                    iov[n].iov_len = len(block)
                    kind[n] = PIECE_META_FULL
                    lgen = gen
                else:
                    iov[n].iov_base = &EMPTY_META
                    iov[n].iov_len = 1
                    kind[n] = PIECE_META_EMPTY
                total += iov[n].iov_len
                n += 1
                left = lis.metaint
            if take == 0 or n == IOV_PER_SEND:
                break
            off = p % ring.cap
            chunk = ring.cap - off
            if chunk > take:
                chunk = take
            if lis.metaint != 0 and chunk > left:
                chunk = left
            iov[n].iov_base = ring.data + off
            iov[n].iov_len = chunk
            kind[n] = PIECE_RING
            total += chunk
            n += 1
            p += chunk
            take -= chunk
            if lis.metaint != 0:
                left -= chunk
        if n == 0:
            continue

        msg.msg_iovlen = n
        # Why sendmsg and not sendfile, splice or MSG_ZEROCOPY: the guard check below
        # trusts the bytes only because the kernel copied them into the socket buffer
        # before sendmsg returned, so the writer may overwrite the ring from then on.
        # sendfile and splice from the memfd hand the socket references to the page cache
        # pages, and MSG_ZEROCOPY pins the user pages, and the bytes are read later, at
        # transmit time, perhaps after the writer overwrote them: a torn stream the check
        # cannot see. (They would also not interleave the ICY blocks.) One copy per
        # listener is the price of never sending a torn byte.
        ret = sendmsg(lis.fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT)
        while ret < 0 and errno == EINTR:
            ret = sendmsg(lis.fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT)
        if ret < 0:
            err = errno
            if err == EAGAIN:      # == EWOULDBLOCK on Linux (memfd rings are Linux-only)
                problems.append((lis, ST_WOULD_BLOCK, EAGAIN))
            else:
                problems.append((lis, ST_ERROR, err))
            continue
        if account_sent(lis, iov, kind, n, ret, block, gen) != 0:
            # The guard rule: the bytes from `start` on must not have been overwritten
            # while the kernel copied them.
            fo_fence_acquire()
            if ring.is_lapped(start, ring.load_write_seq()):
                problems.append((lis, ST_LAPPED, 0))
                continue
        if ret < total:
            problems.append((lis, ST_WOULD_BLOCK, EAGAIN))
    return problems


# -- wake-ups: the reader side ------------------------------------------------------------

cdef class Waiter:
    """Worker `slot`'s one waiting point for all the rings it serves (the theory of
    operation above, "Wake-ups"). With gevent::

        while serving:
            ready = waiter.arm()           # armed, then re-checked: nothing is missed
            if not ready:
                try:
                    gevent.socket.wait_read(waiter.fd, timeout=until_next_deadline)
                except socket.timeout:     # a latency deadline came first: see due(1)
                    pass
                waiter.disarm()            # flag cleared, eventfd drained
                ready = waiter.due()
            for tag in ready: ...a pass over its ring; waiter.passed(ring, seq)

    Raises ValueError if `slot` is not a slot of `doorbells` with an eventfd here.
    """

    cdef Doorbells bells
    cdef uint32_t slot
    cdef list rings             # watched Rings, in the order of `passed`
    cdef list tags              # what due() returns for each
    cdef dict index             # Ring -> its index in rings
    cdef uint64_t *seqs         # write_seq of each ring's last pass
    cdef Py_ssize_t room

    def __cinit__(self):
        self.seqs = NULL
        self.room = 0

    def __init__(self, Doorbells doorbells not None, int slot):
        doorbells.check_slot(slot)
        if doorbells.c.fds[slot] < 0:
            raise ValueError(f"no eventfd for doorbell slot {slot} in this process")
        self.bells = doorbells
        self.slot = slot
        self.rings = []
        self.tags = []
        self.index = {}
        self.disarm()              # a dead worker of this slot may have left it armed

    def __dealloc__(self):
        free(self.seqs)

    @property
    def fd(self):
        """The eventfd to wait on (readable once rung); owned by the Doorbells."""
        self.bells.check_slot(self.slot)
        return self.bells.c.fds[self.slot]

    def __len__(self):
        return len(self.rings)

    def watch(self, Ring ring not None, tag, passed):
        """Serve `ring` (due() lists it as `tag`), last passed at write_seq `passed`; its
        writer rings this worker from now on. Watching it again updates tag and pass."""
        cdef Py_ssize_t i
        ring.set_reader(self.slot, True)
        i = self.index.get(ring, -1)
        if i < 0:
            if len(self.rings) == self.room:
                self.grow()
            i = len(self.rings)
            self.rings.append(ring)
            self.tags.append(tag)
            self.index[ring] = i
        self.tags[i] = tag
        self.seqs[i] = passed

    cdef int grow(self) except -1:
        cdef Py_ssize_t room = self.room * 2 if self.room else 16
        cdef uint64_t *seqs = <uint64_t *>realloc(self.seqs, room * sizeof(uint64_t))
        if seqs == NULL:
            raise MemoryError()
        self.seqs = seqs
        self.room = room
        return 0

    def unwatch(self, Ring ring not None):
        """Stop serving `ring` (no-op if not watched); its writer stops ringing us for it."""
        cdef Py_ssize_t i = self.index.pop(ring, -1), last = len(self.rings) - 1
        if i < 0:
            return
        if ring.base != NULL:
            ring.set_reader(self.slot, False)
        if i != last:                  # move the last one into the hole
            self.rings[i] = self.rings[last]
            self.tags[i] = self.tags[last]
            self.seqs[i] = self.seqs[last]
            self.index[self.rings[i]] = i
        self.rings.pop()
        self.tags.pop()

    def passed(self, Ring ring not None, seq):
        """Record a pass over `ring` that sent up to write_seq `seq`. KeyError if not
        watched."""
        self.seqs[self.index[ring]] = seq

    def due(self, minimum=None):
        """Tags of the watched rings whose write_seq is at least `minimum` bytes past their
        last pass (None: the ring's own wake_batch; 1: any unsent byte). Closed rings are
        never due."""
        cdef Py_ssize_t i
        cdef Ring ring
        cdef uint64_t wseq, need, fixed = 0
        cdef list out = []
        if minimum is not None:
            if minimum < 1:
                raise ValueError("minimum must be >= 1")
            fixed = minimum
        for i in range(len(self.rings)):
            ring = <Ring>self.rings[i]
            if ring.base == NULL:
                continue
            wseq = ring.load_write_seq()
            need = fixed if fixed else fo_load_relaxed_u64(u64_at(ring.base, OFF_WAKE_BATCH))
            if wseq > self.seqs[i] and wseq - self.seqs[i] >= need:
                out.append(self.tags[i])
        return out

    def arm(self):
        """Arm the doorbell, then re-check: the tags due now. If there are any, the doorbell
        is disarmed again and the caller serves them instead of waiting; if none, every
        advance of wake_batch from here on rings the eventfd."""
        cdef uint64_t *armed = self.armed_word()
        # Release: a writer that sees the flag also sees our readers[] flags (watch()).
        fo_store_release_u64(armed, 1)
        # Store-load: the armed flag above before the write_seq loads of due(); the
        # writer fences between its write_seq store and its armed loads (ring_doorbells).
        fo_fence_seq_cst()
        ready = self.due()
        if ready:
            fo_store_relaxed_u64(armed, 0)
        return ready

    def disarm(self):
        """Stop being rung and drain the eventfd; returns how many rings it had counted."""
        cdef eventfd_t count = 0
        fo_store_relaxed_u64(self.armed_word(), 0)
        # A ring after the drain (by a writer that saw the flag before it was cleared) only
        # makes the next wait return at once: the caller then re-checks, nothing is lost.
        if eventfd_read(self.bells.c.fds[self.slot], &count) != 0:
            if errno != EAGAIN:
                raise OSError(errno, os.strerror(errno))
            return 0
        return count

    cdef uint64_t *armed_word(self) except NULL:
        self.bells.check_slot(self.slot)
        return bell_word(self.bells.c.table, self.slot, BELL_ARMED)
