# C-level declarations of the ring: every C extern (atomics.h, libc), the ring header
# layout and the writer primitives, in one place. _core.pyx (fanout._core: Ring, sender) and
# ingest.pyx (fanout._ingest: the compiled ingest) cimport this file; the layout itself is
# specified in docs/ARCHITECTURE.md ("The ring").
#
# Why the extension types are declared in _core.pyx and not here: setup.py builds the
# module as "fanout._core" from _core/_core.pyx, and Cython only treats a .pxd as a
# module's own declarations when it sits at the module's dotted path (fanout/_core.pxd),
# so this file is cimported by name instead. It holds no cdef classes and only inline
# functions (compiled into each module that cimports them), hence no runtime import.

from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy
from posix.uio cimport iovec


cdef extern from "atomics.h" nogil:
    uint64_t fo_load_acquire_u64(const uint64_t *p)
    uint64_t fo_load_relaxed_u64(const uint64_t *p)
    void fo_store_release_u64(uint64_t *p, uint64_t v)
    void fo_store_relaxed_u64(uint64_t *p, uint64_t v)
    uint32_t fo_load_acquire_u32(const uint32_t *p)
    void fo_store_release_u32(uint32_t *p, uint32_t v)
    void fo_store_relaxed_u32(uint32_t *p, uint32_t v)
    void fo_add_relaxed_u64(uint64_t *p, uint64_t v)
    void fo_fence_release()
    void fo_fence_acquire()
    void fo_fence_seq_cst()


cdef extern from "sys/socket.h" nogil:
    ctypedef unsigned int socklen_t
    cdef struct msghdr:
        void *msg_name
        socklen_t msg_namelen
        iovec *msg_iov
        size_t msg_iovlen
        void *msg_control
        size_t msg_controllen
        int msg_flags
    ssize_t sendmsg(int fd, const msghdr *msg, int flags)
    enum:
        MSG_NOSIGNAL
        MSG_DONTWAIT


cdef extern from "sched.h" nogil:
    int sched_yield()


cdef extern from "sys/eventfd.h" nogil:
    ctypedef uint64_t eventfd_t
    int eventfd(unsigned int initval, int flags)
    int eventfd_read(int fd, eventfd_t *value)
    int eventfd_write(int fd, eventfd_t value)
    enum:
        EFD_CLOEXEC
        EFD_NONBLOCK


# The C twins of the public constants (module-level Python names are defined in _core.pyx).
cdef enum:
    RING_MAGIC = 0x474E5246         # "FRNG" read as a little-endian u32
    LAYOUT_VERSION = 3              # 2: the Ogg header block carries its link's start;
                                    # 3: any capacity in pages, wake-up fields
    HEADER_BYTES = 131072
    GUARD_BYTES = 65536
    CAPACITY_UNIT = 4096            # capacities are whole pages
    MIN_CAPACITY_BYTES = 131072     # 2 * GUARD: a reader's window (capacity - GUARD) holds
                                    # at least what the writer may hold back (GUARD)
    DEFAULT_WAKE_BATCH = 8192       # bytes between two doorbell checks of a new ring
    WORKER_SLOTS = 64
    SYNC_TABLE_SLOTS = 256
    META_BLOCK_MAX = 4081           # length byte + 255 * 16
    META_AREA = 4112                # OFF_STREAM_HEADER - OFF_META_BLOCK
    STREAM_HEADER_MAX = 122864      # HEADER_BYTES - OFF_STREAM_HEADER
    IOV_PER_SEND = 32
    RING_FORMAT_GENERIC = 0
    RING_FORMAT_OGG = 1


# Byte offsets in the ring header (docs/ARCHITECTURE.md, little-endian host assumed).
cdef enum:
    OFF_MAGIC = 0
    OFF_VERSION = 4
    OFF_CAPACITY = 8
    OFF_WRITE_SEQ = 16
    OFF_FLAGS = 24
    OFF_FORMAT = 28
    OFF_META_GEN = 32
    OFF_META_LEN = 40
    OFF_HDR_GEN = 48
    OFF_HDR_LEN = 56
    OFF_SYNC_COUNT = 64
    OFF_SYNC_TABLE = 72
    OFF_LISTENERS = 2120
    OFF_BYTES_SENT = 2632
    OFF_HDR_START = 3144            # u64, under the hdr seqlock: where the header's link begins
    OFF_WAKE_SEQ = 3152             # u64: write_seq at the writer's last doorbell check
    OFF_WAKE_BATCH = 3160           # u64: bytes between two doorbell checks
    OFF_READERS = 3200              # u64[64]: worker k serves readers of this ring (0/1)
    OFF_META_BLOCK = 4096
    OFF_STREAM_HEADER = 8208

# Iovec kinds in one sendmsg, so a partial send can be accounted piece by piece.
cdef enum:
    PIECE_PREFIX = 0
    PIECE_PENDING_META = 1
    PIECE_RING = 2
    PIECE_META_FULL = 3
    PIECE_META_EMPTY = 4


# The doorbell table (fanout._core.Doorbells): a memfd made by the supervisor and mapped by
# every process that writes or waits. Slot k's block is written by worker k (armed) and by
# any writer (rang); each block has its own cache line so workers do not share one.
cdef enum:
    BELL_MAGIC = 0x4C454246         # "FBEL" read as a little-endian u32
    BELL_VERSION = 1
    BELL_TABLE_BYTES = 8192         # the header line and 64 slot lines, in whole pages
    BELL_OFF_MAGIC = 0
    BELL_OFF_VERSION = 4
    BELL_OFF_SLOTS = 8              # u32: doorbells in the table (worker slots 0..slots-1)
    BELL_SLOT_BASE = 64             # slot k's block: BELL_SLOT_BASE + BELL_SLOT_STRIDE * k
    BELL_SLOT_STRIDE = 64
    BELL_ARMED = 0                  # u64 in a slot block: 1 while its worker waits
    BELL_RANG = 8                   # u64: eventfd writes made to this slot, by any writer


cdef struct Bells:
    # A process's view of the doorbells: the mapped table and the eventfd of each slot as
    # numbered in this process (-1: not known here).
    char *table
    uint32_t slots
    int fds[WORKER_SLOTS]


# -- writer primitives, shared by Ring (_core.pyx) and Ingest (ingest.pyx) ----------------
# Inline here so that both modules write the ring the same way from one definition.

cdef inline uint64_t *u64_at(char *base, Py_ssize_t off) noexcept nogil:
    return <uint64_t *>(base + off)


cdef inline uint32_t *u32_at(char *base, Py_ssize_t off) noexcept nogil:
    return <uint32_t *>(base + off)


cdef inline uint64_t *bell_word(char *table, uint32_t slot, Py_ssize_t field) noexcept nogil:
    return u64_at(table, BELL_SLOT_BASE + BELL_SLOT_STRIDE * <Py_ssize_t>slot + field)


cdef inline void ring_put(char *data, uint64_t cap, uint64_t seq, const unsigned char *src,
                          uint64_t n) noexcept nogil:
    """Copy n (<= cap) bytes to the data area at sequence `seq`, wrapping; publishes nothing.

    `seq % cap`, not a mask: capacities are whole pages, not powers of two, so a ring holds
    what its mount needs; a division per copy is nothing next to the copy (measured)."""
    cdef uint64_t off = seq % cap
    cdef uint64_t first = cap - off
    if first > n:
        first = n
    memcpy(data + off, src, first)
    memcpy(data, src + first, n - first)


cdef inline void ring_publish(char *base, uint64_t seq, Bells *bells) noexcept nogil:
    """Make the bytes up to `seq` visible to readers, then ring the doorbells that are due.

    The one way any writer (Ring.write, Ingest) publishes write_seq. Ordering:
    - the release store: every byte copied before it is visible to a reader that
      acquire-loads this write_seq (or a later one);
    - the release fence after it, before the next copy into the data area (memcpy, or the
      kernel's readv in Ingest.read_piece): the guard rule's other half. That copy
      overwrites bytes from seq + GUARD - capacity on, which a reader may be sending; the
      reader trusts what it copied only if write_seq, loaded after its copy (acquire
      fence), is not past them. So no store of the next copy may become visible before
      this publication. A release store orders what precedes it, not what follows (on
      aarch64 a later STR may become visible before an STLR); the fence (DMB ISH) orders
      this store before every later one. On x86-64 (TSO) stores are never reordered with
      stores: the fence is a compiler barrier only and costs nothing.
    """
    fo_store_release_u64(u64_at(base, OFF_WRITE_SEQ), seq)
    fo_fence_release()
    if bells != NULL and bells.table != NULL:      # NULL table: the Doorbells were closed
        ring_doorbells(base, seq, bells)


cdef inline void ring_doorbells(char *base, uint64_t seq, Bells *bells) noexcept nogil:
    """Once write_seq moved wake_batch bytes past the last check, ring every armed worker
    that serves this ring (fanout._core's theory of operation, "Wake-ups"). Between two
    checks: two loads and a compare, no fence, no syscall; nobody armed: a fence and one
    load per slot, no syscall."""
    cdef uint64_t *last_p = u64_at(base, OFF_WAKE_SEQ)
    cdef uint32_t k
    if seq - fo_load_relaxed_u64(last_p) < fo_load_relaxed_u64(u64_at(base, OFF_WAKE_BATCH)):
        return
    fo_store_relaxed_u64(last_p, seq)      # only the writer uses it
    # Store-load: write_seq above before the armed flags below. A worker arms, fences and
    # then loads write_seq: of the two, at least one sees the other's store, so a worker
    # that re-checked before this publication is rung now.
    fo_fence_seq_cst()
    for k in range(bells.slots):
        if (fo_load_acquire_u64(bell_word(bells.table, k, BELL_ARMED))
                and fo_load_relaxed_u64(u64_at(base, OFF_READERS + 8 * <Py_ssize_t>k))
                and bells.fds[k] >= 0):
            eventfd_write(bells.fds[k], 1)     # cannot block: the count never nears 2**64
            fo_add_relaxed_u64(bell_word(bells.table, k, BELL_RANG), 1)


cdef inline uint64_t *sync_slot(char *base, uint64_t i) noexcept nogil:
    return u64_at(base, OFF_SYNC_TABLE + 8 * <Py_ssize_t>(i % SYNC_TABLE_SLOTS))


cdef inline void ring_add_sync(char *base, uint64_t seq) noexcept nogil:
    """Record a sync point; sequences not above the last one are ignored."""
    cdef uint64_t *count_p = u64_at(base, OFF_SYNC_COUNT)
    cdef uint64_t count = fo_load_relaxed_u64(count_p)     # one writer: no race on count
    if count > 0 and seq <= fo_load_relaxed_u64(sync_slot(base, count - 1)):
        return
    fo_store_relaxed_u64(sync_slot(base, count), seq)
    fo_store_release_u64(count_p, count + 1)


cdef inline void seqlock_write(char *base, Py_ssize_t gen_off, Py_ssize_t len_off,
                               Py_ssize_t area_off, const unsigned char *src, uint32_t n,
                               Py_ssize_t extra_off, uint64_t extra) noexcept nogil:
    """Replace a seqlocked block: generation odd, bytes (and the u64 at `extra_off`, if it is
    not 0) written, length set, generation even."""
    cdef uint64_t *gen_p = u64_at(base, gen_off)
    cdef uint64_t odd = fo_load_relaxed_u64(gen_p) | 1
    fo_store_relaxed_u64(gen_p, odd)
    fo_fence_release()
    memcpy(base + area_off, src, n)
    if extra_off:
        fo_store_relaxed_u64(u64_at(base, extra_off), extra)
    fo_store_relaxed_u32(u32_at(base, len_off), n)
    fo_store_release_u64(gen_p, odd + 1)


cdef inline void header_write(char *base, const unsigned char *src, uint32_t n,
                              uint64_t link_start) noexcept nogil:
    """Publish an Ogg header set (n <= STREAM_HEADER_MAX) with the sequence of its link's
    first data page, atomically for readers of the seqlock."""
    seqlock_write(base, OFF_HDR_GEN, OFF_HDR_LEN, OFF_STREAM_HEADER, src, n,
                  OFF_HDR_START, link_start)
