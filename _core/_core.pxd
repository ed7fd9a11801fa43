# C-level declarations of fanout._core: every C extern (atomics.h, libc) and the ring
# header layout, in one place. _core.pyx cimports this file and implements the module; the
# layout itself is specified in docs/ARCHITECTURE.md ("The ring").
#
# Why the extension types are declared in _core.pyx and not here: setup.py builds the
# module as "fanout._core" from _core/_core.pyx, and Cython only treats a .pxd as a
# module's own declarations when it sits at the module's dotted path (fanout/_core.pxd),
# so this file is cimported by name instead. It holds no cdef classes or functions,
# hence no runtime import.

from libc.stdint cimport uint32_t, uint64_t
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


# The C twins of the public constants (module-level Python names are defined in _core.pyx).
cdef enum:
    RING_MAGIC = 0x474E5246         # "FRNG" read as a little-endian u32
    LAYOUT_VERSION = 1
    HEADER_BYTES = 131072
    GUARD_BYTES = 65536
    WORKER_SLOTS = 64
    SYNC_TABLE_SLOTS = 256
    META_BLOCK_MAX = 4081           # length byte + 255 * 16
    META_AREA = 4112                # OFF_STREAM_HEADER - OFF_META_BLOCK
    STREAM_HEADER_MAX = 122864      # HEADER_BYTES - OFF_STREAM_HEADER
    IOV_PER_SEND = 32


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
    OFF_META_BLOCK = 4096
    OFF_STREAM_HEADER = 8208

# Iovec kinds in one sendmsg, so a partial send can be accounted piece by piece.
cdef enum:
    PIECE_PREFIX = 0
    PIECE_PENDING_META = 1
    PIECE_RING = 2
    PIECE_META_FULL = 3
    PIECE_META_EMPTY = 4
