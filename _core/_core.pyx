# cython: language_level=3
"""fanout._core: the shared-memory ring and the listener sender (the production data plane).

Theory of operation (the layout and rules are in docs/ARCHITECTURE.md, "The ring"):

- A Ring is a memfd mapped MAP_SHARED by the supervisor and every worker. Exactly one
  process writes audio into it; positions are absolute u64 sequences, the byte at `s`
  lives at data[s % capacity]. The writer copies at most GUARD bytes, then release-stores
  `write_seq`; readers acquire-load it. A reader that has sent bytes starting at `p`
  re-checks `write_seq + GUARD - capacity <= p` afterwards: if that fails the writer may
  have been overwriting them and the listener is dropped (never a torn byte on the wire).
- ICY metadata and Ogg header pages are small blocks guarded by seqlocks. The header block
  also holds the sequence where its link's data begins, so that a listener joining a
  chained Ogg stream gets the header pages of the link it starts in (start_point).
- send_many() makes one pass over one mount's listeners: per listener, up to 32 iovecs
  (pending prefix, a partly sent ICY block, ring data split at the wrap and at every
  metaint boundary, ICY blocks) and one non-blocking sendmsg. EAGAIN is a normal result.
  Partial sends are accounted piece by piece so the next pass resumes at the exact byte.

fanout/coreref.py is the pure-Python twin of this module (same names, same layout); the
tests run against both and check they interoperate on the same memfd.
"""
import os
import struct

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.errno cimport EAGAIN, EINTR, errno
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy, memset
from posix.mman cimport MAP_FAILED, MAP_SHARED, PROT_READ, PROT_WRITE, mmap, munmap
from posix.uio cimport iovec
from posix.unistd cimport close as c_close

# The C externs and header offsets (_core/_core.pxd; see there why it is cimported by name).
from _core cimport *

HEADER_SIZE = HEADER_BYTES
GUARD = GUARD_BYTES
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


class LappedError(Exception):
    """Ring.read() of bytes that are no longer (or may no longer be) in the ring."""


def ring_capacity_for(queue_size, burst_size):
    """Smallest power of two >= queue_size + burst_size + 2*GUARD (and >= 4*GUARD)."""
    if queue_size < 0 or burst_size < 0:
        raise ValueError("queue_size and burst_size must be >= 0")
    need = max(queue_size + burst_size + 2 * GUARD_BYTES, 4 * GUARD_BYTES)
    return 1 << (need - 1).bit_length()


def _check_capacity(capacity):
    if capacity < 4 * GUARD_BYTES or capacity & (capacity - 1):
        raise ValueError(f"ring capacity must be a power of two >= {4 * GUARD_BYTES}, "
                         f"got {capacity}")


cdef class Ring:
    """One mount's ring, mapped from a memfd. Build with Ring.create() or Ring.attach()."""

    cdef char *base           # start of the mapping (the header); NULL once closed
    cdef char *data           # base + HEADER_SIZE
    cdef size_t map_len
    cdef uint64_t cap
    cdef uint64_t mask        # cap - 1 (cap is a power of two)
    cdef uint32_t _fmt
    cdef int _fd

    def __cinit__(self):
        self.base = NULL
        self._fd = -1

    def __init__(self, *args, **kwargs):
        raise TypeError("use Ring.create() or Ring.attach()")

    def __dealloc__(self):
        if self.base != NULL:
            munmap(self.base, self.map_len)
            self.base = NULL
        if self._fd >= 0:
            c_close(self._fd)
            self._fd = -1

    @staticmethod
    def create(capacity, int fmt, name="fanout-ring"):
        """A new zeroed ring in a fresh memfd (close-on-exec; pass it with pass_fds/SCM_RIGHTS).

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
        ring._fmt = fmt
        ring.set_metadata(INITIAL_METADATA)
        return ring

    @staticmethod
    def attach(int fd):
        """Map an existing ring. The fd is dup'ed: the caller keeps (and closes) its own.

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
        self.mask = cap - 1
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

    # -- audio --------------------------------------------------------------------------

    def write(self, data):
        """Append a buffer; write_seq is published after every piece of at most GUARD bytes."""
        cdef Py_buffer view
        cdef const unsigned char *src
        cdef uint64_t *wp
        cdef uint64_t seq, chunk, left
        self.check_open()
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            src = <const unsigned char *>view.buf
            left = view.len
            wp = u64_at(self.base, OFF_WRITE_SEQ)
            seq = fo_load_relaxed_u64(wp)      # we are the only writer
            while left > 0:
                chunk = GUARD_BYTES if left > GUARD_BYTES else left
                ring_put(self.data, self.cap, seq, src, chunk)
                src += chunk
                left -= chunk
                seq += chunk
                fo_store_release_u64(wp, seq)
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
        off = s & self.mask
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
            off = p & ring.mask
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
