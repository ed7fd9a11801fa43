# cython: language_level=3
"""fanout._ingest: the compiled ingest, from a source's socket into its mount's ring.

Theory of operation. An Ingest maps the ring's memfd itself (it is the ring's one writer)
and keeps `end`, the sequence up to which bytes have been placed in the data area, and
`published`, the write_seq it last published; bytes in between are held back, at most
GUARD of them (the ring's writer rule). Input is processed in pieces of at most GUARD
minus the held bytes: `feed` cuts a buffer so, `feed_fd` asks read(2) for one such piece
at a time. A piece is placed at `end` - straight from the socket with readv when no ICY
blocks need stripping, else read into a scratch buffer and copied without its blocks -
and then parsed where it lies, in the ring:

* ogg: pages are found and CRC-checked in place; bytes are published up to the end of the
  last whole page (or skipped garbage), so an incomplete page stays held back. For every
  data page: publish up to its end, then a link's pending header set (seqlocked, with
  this page's sequence as the link's start), then a sync point at its start.
* mpeg/adts: the frame tracker walks the frames in the ring behind `end`; every byte is
  published at once, and a frame start becomes a sync point at most once per
  min_sync_gap bytes (if no frame is seen for UNLOCKED_FALLBACK bytes, piece starts are).
* generic: each piece start is a sync point, at most once per min_sync_gap bytes.

Each piece is one chunk of fanout/model/ingest.py's sans-IO Ingest, whose rules this
module follows exactly (fanout/ingestref.py applies that oracle to a ring; the tests feed
both the same chunkings and compare the rings). What Python must act on is queued as
events: an upstream ICY title, a new link's header set, a link whose header set was
skipped because it broke a bound. The steady state makes no Python call per piece.

Every publication goes through ring_publish (_core/_core.pxd): the release store of
write_seq, the fence that keeps the next piece's bytes - copied, or read(2) straight into
the data area - from becoming visible before it, and the doorbells of the workers waiting
for this ring (the ring's Doorbells, if it has any: fanout._core, "Wake-ups").
"""
import os

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.exc cimport PyErr_CheckSignals
from cpython.pycapsule cimport PyCapsule_GetPointer
from libc.errno cimport EAGAIN, EINTR, errno
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memchr, memcpy
from posix.mman cimport MAP_FAILED, MAP_SHARED, PROT_READ, PROT_WRITE, mmap, munmap
from posix.uio cimport iovec, readv
from posix.unistd cimport read

# The C externs, the ring layout and the writer primitives (_core/_core.pxd).
from _core cimport *

GUARD = GUARD_BYTES
READ_EOF = 0                 # feed_fd: the peer closed (nothing was read)
READ_AGAIN = -1              # feed_fd: nothing to read now (EAGAIN)
FEED_FD_MAX = GUARD_BYTES    # feed_fd reads about this much per call at most by default

EVENT_TITLE = 1              # payload: an upstream ICY block's payload (length byte removed)
EVENT_HEADERS = 2            # payload: a new Ogg link's header set, now published
EVENT_SKIPPED = 3            # payload: why a link's header set was skipped (ASCII)

cdef enum:
    FMT_GENERIC = 0
    FMT_MPEG = 1
    FMT_ADTS = 2
    FMT_OGG = 3

    ICY_AUDIO = 0
    ICY_LENGTH = 1
    ICY_PAYLOAD = 2
    ICY_PAYLOAD_MAX = 255 * 16

    # Bounds and rules of fanout/model (ogg.py, ingest.py); a test checks they agree.
    OGG_HEADER = 27
    MAX_HEADER_PAGES_C = 64
    MAX_LINK_STREAMS_C = 16
    UNLOCKED_FALLBACK_C = 65536
    DEFAULT_MIN_SYNC_GAP_C = 4096

    FLAG_BOS = 0x02
    FLAG_EOS = 0x04

    CH_O = 0x4F                  # "OggS", the capture pattern
    CH_G = 0x67
    CH_S = 0x53

cdef uint64_t NEED_MORE = <uint64_t>-1   # page_length_at: the header is not all there yet
cdef uint64_t NOT_FOUND = <uint64_t>-1

MAX_HEADER_SET = STREAM_HEADER_MAX
MAX_HEADER_PAGES = MAX_HEADER_PAGES_C
MAX_LINK_STREAMS = MAX_LINK_STREAMS_C
UNLOCKED_FALLBACK = UNLOCKED_FALLBACK_C
DEFAULT_MIN_SYNC_GAP = DEFAULT_MIN_SYNC_GAP_C

_FORMATS = {"ogg": FMT_OGG, "mpeg": FMT_MPEG, "adts": FMT_ADTS, "generic": FMT_GENERIC}
_SKIP_STREAMS = f"more than {MAX_LINK_STREAMS_C} logical streams in one link".encode()
_SKIP_PAGES = f"more than {MAX_HEADER_PAGES_C} header pages in one logical stream".encode()
_SKIP_BYTES = f"header pages over {STREAM_HEADER_MAX} bytes".encode()


# -- the Ogg CRC (non-reflected CRC-32, polynomial 0x04c11db7), four bytes at a time -------

cdef uint32_t CRC[4][256]


cdef void _crc_init() noexcept:
    cdef uint32_t reg, i, k
    for i in range(256):
        reg = i << 24
        for k in range(8):
            reg = ((reg << 1) ^ 0x04C11DB7) if reg & 0x80000000 else (reg << 1)
        CRC[0][i] = reg
    for i in range(256):
        for k in range(1, 4):
            CRC[k][i] = (CRC[k - 1][i] << 8) ^ CRC[0][CRC[k - 1][i] >> 24]


_crc_init()


cdef uint32_t crc_update(uint32_t crc, const unsigned char *p, size_t n) noexcept nogil:
    while n >= 4:
        crc ^= (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]
        crc = (CRC[3][crc >> 24] ^ CRC[2][(crc >> 16) & 0xFF] ^ CRC[1][(crc >> 8) & 0xFF]
               ^ CRC[0][crc & 0xFF])
        p += 4
        n -= 4
    while n:
        crc = (crc << 8) ^ CRC[0][(crc >> 24) ^ p[0]]
        p += 1
        n -= 1
    return crc


def ogg_crc(data):
    """The Ogg CRC of `data` (the page with its CRC field zeroed); for tests."""
    cdef const unsigned char[:] view = data
    if len(view) == 0:
        return 0
    return crc_update(0, &view[0], len(view))


# -- MPEG audio and ADTS frame headers (fanout/model/mpeg.py) -----------------------------

cdef unsigned short MPEG1_KBPS[4][15]
cdef unsigned short MPEG2_KBPS[4][15]
cdef unsigned int SAMPLE_RATES[4][3]


cdef void _tables_init() noexcept:
    cdef int i
    cdef unsigned short m1l1[14]
    cdef unsigned short m1l2[14]
    cdef unsigned short m1l3[14]
    cdef unsigned short m2l1[14]
    cdef unsigned short m2l23[14]
    m1l1[:] = [32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448]
    m1l2[:] = [32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384]
    m1l3[:] = [32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320]
    m2l1[:] = [32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256]
    m2l23[:] = [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160]
    for i in range(14):                       # layer bits: 3 = I, 2 = II, 1 = III
        MPEG1_KBPS[3][i + 1] = m1l1[i]
        MPEG1_KBPS[2][i + 1] = m1l2[i]
        MPEG1_KBPS[1][i + 1] = m1l3[i]
        MPEG2_KBPS[3][i + 1] = m2l1[i]
        MPEG2_KBPS[2][i + 1] = m2l23[i]
        MPEG2_KBPS[1][i + 1] = m2l23[i]
    SAMPLE_RATES[0][:] = [11025, 12000, 8000]   # version bits 0: MPEG-2.5
    SAMPLE_RATES[2][:] = [22050, 24000, 16000]  # 2: MPEG-2
    SAMPLE_RATES[3][:] = [44100, 48000, 32000]  # 3: MPEG-1


_tables_init()


cdef uint64_t mpeg_frame_length(const unsigned char *h) noexcept nogil:
    """Length of the MPEG audio frame with this 4-byte header; 0 if not a valid header."""
    cdef unsigned int version, layer, bitrate_index, rate_index, padding, bitrate, rate
    if h[0] != 0xFF or h[1] & 0xE0 != 0xE0:
        return 0
    version = (h[1] >> 3) & 3
    layer = (h[1] >> 1) & 3
    bitrate_index = h[2] >> 4
    rate_index = (h[2] >> 2) & 3
    if version == 1 or layer == 0 or bitrate_index == 0 or bitrate_index == 15 or rate_index == 3:
        return 0
    if version == 3:
        bitrate = MPEG1_KBPS[layer][bitrate_index] * 1000
    else:
        bitrate = MPEG2_KBPS[layer][bitrate_index] * 1000
    rate = SAMPLE_RATES[version][rate_index]
    padding = (h[2] >> 1) & 1
    if layer == 3:
        return (12 * bitrate // rate + padding) * 4
    if layer == 1 and version != 3:
        return 72 * bitrate // rate + padding
    return 144 * bitrate // rate + padding


cdef uint64_t adts_frame_length(const unsigned char *h) noexcept nogil:
    """Length of the ADTS frame with this header (6 bytes used); 0 if not a valid header."""
    cdef uint64_t length, minimum
    if h[0] != 0xFF or h[1] & 0xF6 != 0xF0:
        return 0
    if (h[2] >> 2) & 0xF >= 13:               # reserved sampling frequency index
        return 0
    length = ((<uint64_t>h[3] & 0x03) << 11) | (<uint64_t>h[4] << 3) | (h[5] >> 5)
    minimum = 7 if h[1] & 0x01 else 9          # the header, and its CRC if present
    return length if length >= minimum else 0


cdef uint32_t frame_key(int fmt, const unsigned char *h) noexcept nogil:
    """What stays put within a stream (as ffmpeg checks): MPEG version, layer and sample
    rate; ADTS ID, layer, profile, sampling frequency and channel configuration."""
    if fmt == FMT_MPEG:
        return (<uint32_t>(h[1] & 0xFE) << 8) | (h[2] & 0x0C)
    return (<uint32_t>(h[1] & 0xFE) << 16) | (<uint32_t>(h[2] & 0xFD) << 8) | (h[3] & 0xC0)


cdef class Ingest:
    """Writes a source's or relay's bytes into `ring`: audio, sync points, Ogg header sets.

    `fmt` is an ingest format ("ogg", "mpeg", "adts", "generic"); `icy_metaint` the
    upstream's interval of inline ICY blocks (0: none). Raises ValueError for an unknown
    format or a ring that is not one. What Python must act on is queued (`take_events`).
    """

    # the ring, as mapped by this ingest
    cdef char *base
    cdef char *data
    cdef uint64_t cap
    cdef size_t map_len
    cdef uint64_t origin           # write_seq when this ingest began
    cdef uint64_t published        # the write_seq this ingest last published
    cdef uint64_t end              # bytes placed in the data area up to here
    cdef object doorbells          # the ring's Doorbells (kept alive for `bells`), or None
    cdef Bells *bells              # their C view, or NULL
    cdef int fmt
    cdef list events
    # sync points of mpeg/adts/generic
    cdef uint64_t min_gap
    cdef bint have_last_sync
    cdef uint64_t last_sync
    # frame tracker (mpeg/adts)
    cdef uint64_t fpos             # next byte to examine
    cdef bint locked
    cdef uint32_t key
    cdef int need                  # header bytes needed to know a frame's length
    # Ogg page scanner: every byte before `scan` was classified (page or garbage)
    cdef uint64_t scan
    # Ogg header tracker: the current link
    cdef int nstreams
    cdef uint32_t serials[MAX_LINK_STREAMS_C]
    cdef uint64_t stream_pages[MAX_LINK_STREAMS_C]
    cdef bint in_headers[MAX_LINK_STREAMS_C]
    cdef bint live[MAX_LINK_STREAMS_C]
    cdef uint64_t header_pages     # header pages seen in this link, kept or not
    cdef bint link_has_data
    cdef bint pending              # a header set to publish at the next data page
    cdef bint skipped
    cdef unsigned char *hdr        # the link's kept header pages
    cdef size_t hdr_len
    cdef size_t hdr_cap
    # ICY stripping (relays)
    cdef uint64_t metaint
    cdef int icy_state
    cdef uint64_t icy_left
    cdef unsigned char icy_payload[ICY_PAYLOAD_MAX]
    cdef size_t icy_len
    cdef unsigned char *scratch    # read buffer when blocks must be stripped

    def __cinit__(self):
        self.base = NULL
        self.hdr = NULL
        self.scratch = NULL
        self.bells = NULL

    def __init__(self, ring, str fmt, *, min_sync_gap=DEFAULT_MIN_SYNC_GAP_C, icy_metaint=0):
        if fmt not in _FORMATS:
            raise ValueError(f"unknown stream format {fmt!r}, expected one of "
                             f"{tuple(_FORMATS)}")
        if icy_metaint < 0:
            raise ValueError(f"icy-metaint must be >= 0, got {icy_metaint}")
        if min_sync_gap < 0:
            raise ValueError("min_sync_gap must be >= 0")
        self.map_ring(ring.fd, ring.capacity)
        self.use_doorbells(getattr(ring, "doorbells", None))
        self.fmt = _FORMATS[fmt]
        self.events = []
        self.min_gap = min_sync_gap
        self.origin = fo_load_acquire_u64(u64_at(self.base, OFF_WRITE_SEQ))
        self.published = self.end = self.fpos = self.scan = self.origin
        self.need = 4 if self.fmt == FMT_MPEG else 6
        self.start_link()
        self.metaint = icy_metaint
        self.icy_left = icy_metaint
        if icy_metaint:
            self.scratch = <unsigned char *>malloc(GUARD_BYTES)
            if self.scratch == NULL:
                raise MemoryError()

    cdef int use_doorbells(self, doorbells) except -1:
        """Ring what the ring's writes ring. TypeError for the twin's Doorbells: this
        module reaches the C view of fanout._core's only."""
        if doorbells is None:
            return 0
        capsule = getattr(doorbells, "_capsule", None)
        if capsule is None:
            raise TypeError("the compiled ingest rings fanout._core Doorbells only")
        self.bells = <Bells *>PyCapsule_GetPointer(capsule(), b"fanout._core.Bells")
        self.doorbells = doorbells
        return 0

    cdef int map_ring(self, int fd, uint64_t cap) except -1:
        if os.fstat(fd).st_size < HEADER_BYTES + cap:
            raise ValueError("ring file shorter than its capacity")
        cdef size_t length = HEADER_BYTES + cap
        cdef void *p = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        if p == MAP_FAILED:
            raise OSError(errno, os.strerror(errno))
        self.base = <char *>p
        self.map_len = length
        if (u32_at(self.base, OFF_MAGIC)[0] != RING_MAGIC
                or u32_at(self.base, OFF_VERSION)[0] != LAYOUT_VERSION
                or u64_at(self.base, OFF_CAPACITY)[0] != cap):
            raise ValueError("not a fanout ring of this layout version")
        self.data = self.base + HEADER_BYTES
        self.cap = cap
        return 0

    def __dealloc__(self):
        self.release()

    cdef void release(self) noexcept:
        if self.base != NULL:
            munmap(self.base, self.map_len)
            self.base = NULL
        free(self.hdr)
        self.hdr = NULL
        free(self.scratch)
        self.scratch = NULL
        self.bells = NULL
        self.doorbells = None

    def close(self):
        """Unmap this ingest's view of the ring. Idempotent; later feeds raise ValueError."""
        self.release()

    cdef int check_open(self) except -1:
        if self.base == NULL:
            raise ValueError("ingest is closed")
        return 0

    # -- Python API ---------------------------------------------------------------------

    def feed(self, data):
        """Ingest `data`; return its length."""
        cdef Py_buffer view
        cdef const unsigned char *src
        cdef Py_ssize_t done = 0, take
        self.check_open()
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            src = <const unsigned char *>view.buf
            while done < view.len:
                take = self.room()
                if take > view.len - done:
                    take = view.len - done
                self.take_piece(src + done, take)
                done += take
        finally:
            PyBuffer_Release(&view)
        return done

    def feed_fd(self, int fd, Py_ssize_t max_bytes=FEED_FD_MAX):
        """Read the non-blocking `fd` into the ring until it has nothing more now (a short
        read), or about `max_bytes` were read. Returns the bytes read, READ_AGAIN if there
        were none to read, READ_EOF if the peer closed. Raises OSError as read(2) fails."""
        return self.read_fd(fd, max_bytes)

    cdef Py_ssize_t read_fd(self, int fd, Py_ssize_t max_bytes) except -3:
        """feed_fd, callable from C (FeedPoll)."""
        cdef Py_ssize_t total = 0, size, n
        self.check_open()
        while total < max_bytes:
            size = self.room()
            n = self.read_piece(fd, size)
            if n < 0:
                if errno == EINTR:
                    PyErr_CheckSignals()
                    continue
                if errno == EAGAIN:
                    return total if total else READ_AGAIN
                raise OSError(errno, os.strerror(errno))
            total += n
            if n < size:
                break
        return total

    def take_events(self):
        """The events since the last call, in order: (EVENT_*, payload)."""
        cdef list events = self.events
        if events:
            self.events = []
        else:
            events = []
        return events

    # -- pieces -------------------------------------------------------------------------

    cdef Py_ssize_t room(self) noexcept:
        """How much input the next piece may hold: the writer never runs more than GUARD
        bytes ahead of its published write_seq."""
        return <Py_ssize_t>(GUARD_BYTES - (self.end - self.published))

    cdef int take_piece(self, const unsigned char *src, Py_ssize_t n) except -1:
        cdef uint64_t start = self.end
        if self.metaint:
            self.strip_icy(src, n)
        else:
            ring_put(self.data, self.cap, self.end, src, n)
            self.end += n
        return self.parse(start)

    cdef Py_ssize_t read_piece(self, int fd, Py_ssize_t size) except -2:
        """One read(2) of at most `size` bytes, parsed; its result (errno set if < 0)."""
        cdef iovec iov[2]
        cdef uint64_t off, first
        cdef Py_ssize_t n
        cdef uint64_t start = self.end
        if self.metaint:
            n = read(fd, self.scratch, size)
            if n > 0:
                self.strip_icy(self.scratch, n)
        else:
            # Straight into the data area, in two pieces if it wraps.
            off = self.end % self.cap
            first = self.cap - off
            if first > <uint64_t>size:
                first = size
            iov[0].iov_base = self.data + off
            iov[0].iov_len = first
            iov[1].iov_base = self.data
            iov[1].iov_len = size - first
            n = readv(fd, iov, 2 if <uint64_t>size > first else 1)
            if n > 0:
                self.end += n
        if n > 0:
            self.parse(start)
        return n

    cdef int strip_icy(self, const unsigned char *src, Py_ssize_t n) except -1:
        """Place the audio of `src` at `end`, without its ICY blocks (fanout/protocol/icy.py's
        IcyStripper: a three-state machine driven by byte counts only)."""
        cdef Py_ssize_t i = 0
        cdef uint64_t take
        while i < n:
            if self.icy_state == ICY_LENGTH:
                if src[i]:
                    self.icy_state = ICY_PAYLOAD
                    self.icy_left = 16 * <uint64_t>src[i]
                    self.icy_len = 0
                else:                              # "\0": metadata unchanged
                    self.icy_state = ICY_AUDIO
                    self.icy_left = self.metaint
                i += 1
                continue
            take = n - i
            if take > self.icy_left:
                take = self.icy_left
            if self.icy_state == ICY_AUDIO:
                ring_put(self.data, self.cap, self.end, src + i, take)
                self.end += take
            else:
                memcpy(self.icy_payload + self.icy_len, src + i, take)
                self.icy_len += take
            i += take
            self.icy_left -= take
            if self.icy_left:
                continue
            if self.icy_state == ICY_PAYLOAD:
                self.events.append((EVENT_TITLE, PyBytes_FromStringAndSize(
                    <char *>self.icy_payload, self.icy_len)))
                self.icy_state = ICY_AUDIO
                self.icy_left = self.metaint
            else:
                self.icy_state = ICY_LENGTH
        return 0

    cdef int parse(self, uint64_t start) except -1:
        """Publish and parse the piece [start, end) just placed in the data area."""
        if self.fmt == FMT_OGG:
            return self.scan_pages()
        self.publish(self.end)
        if self.end == start:
            return 0
        if self.fmt == FMT_GENERIC:
            self.gated_sync(start)
        else:
            self.track_frames(start)
        return 0

    cdef void publish(self, uint64_t seq) noexcept nogil:
        if seq != self.published:
            ring_publish(self.base, seq, self.bells)
            self.published = seq

    cdef void gated_sync(self, uint64_t seq) noexcept nogil:
        """A sync point at `seq` unless the last one is less than min_sync_gap before it."""
        if not self.have_last_sync or seq - self.last_sync >= self.min_gap:
            ring_add_sync(self.base, seq)
            self.last_sync = seq
            self.have_last_sync = True

    # -- bytes in the ring --------------------------------------------------------------

    cdef inline unsigned char byte_at(self, uint64_t seq) noexcept nogil:
        return <unsigned char>self.data[seq % self.cap]

    cdef void peek(self, uint64_t seq, size_t n, unsigned char *dst) noexcept nogil:
        """Copy n bytes at `seq` out of the data area (wrapping)."""
        cdef uint64_t off = seq % self.cap
        cdef size_t first = self.cap - off
        if first > n:
            first = n
        memcpy(dst, self.data + off, first)
        memcpy(dst + first, self.data, n - first)

    cdef uint64_t find_byte(self, unsigned char c, uint64_t frm, uint64_t to) noexcept nogil:
        """Sequence of the first `c` in [frm, to), or NOT_FOUND."""
        cdef uint64_t off, span
        cdef const char *hit
        while frm < to:
            off = frm % self.cap
            span = self.cap - off
            if span > to - frm:
                span = to - frm
            hit = <const char *>memchr(self.data + off, c, span)
            if hit != NULL:
                return frm + <uint64_t>(hit - (self.data + off))
            frm += span
        return NOT_FOUND

    cdef uint32_t crc_at(self, uint32_t crc, uint64_t seq, size_t n) noexcept nogil:
        cdef uint64_t off = seq % self.cap
        cdef size_t first = self.cap - off
        if first > n:
            first = n
        crc = crc_update(crc, <const unsigned char *>self.data + off, first)
        return crc_update(crc, <const unsigned char *>self.data, n - first)

    # -- MPEG / ADTS frames (fanout/model/mpeg.py's MpegFrameTracker) -------------------

    cdef uint64_t frame_length_at(self, uint64_t seq, uint32_t *key) noexcept nogil:
        cdef unsigned char h[6]
        cdef uint64_t length
        self.peek(seq, self.need, h)
        length = mpeg_frame_length(h) if self.fmt == FMT_MPEG else adts_frame_length(h)
        key[0] = frame_key(self.fmt, h)
        return length

    cdef int track_frames(self, uint64_t start) except -1:
        """Frames starting in this piece become (gated) sync points; with none and no sync
        point for UNLOCKED_FALLBACK bytes, the piece start does (a mislabelled stream)."""
        cdef uint64_t length
        cdef uint32_t key
        cdef bint found = False
        while self.fpos + self.need <= self.end:
            if not self.locked:
                if not self.hunt():
                    break
                continue
            length = self.frame_length_at(self.fpos, &key)
            if length == 0 or key != self.key:
                self.locked = False            # lost the frame chain: hunt again from here
                continue
            if self.fpos >= start:             # a frame begun in an earlier piece is not
                found = True
                self.gated_sync(self.fpos)
            self.fpos += length
        if not found:
            if (start - (self.last_sync if self.have_last_sync else self.origin)
                    >= UNLOCKED_FALLBACK_C):
                self.gated_sync(start)
        return 0

    cdef bint hunt(self) noexcept nogil:
        """Find two chained frames from fpos and lock on the first. False: need data."""
        cdef uint64_t hit, length, following
        cdef uint32_t key, next_key
        while True:
            hit = self.find_byte(0xFF, self.fpos, self.end)
            if hit == NOT_FOUND:
                self.fpos = self.end
                return False
            self.fpos = hit
            if self.fpos + self.need > self.end:
                return False
            length = self.frame_length_at(self.fpos, &key)
            if length:
                following = self.fpos + length
                if following + self.need > self.end:
                    return False
                if self.frame_length_at(following, &next_key) and next_key == key:
                    self.key = key
                    self.locked = True
                    return True
            self.fpos += 1

    # -- Ogg pages (fanout/model/ogg.py's OggPageScanner) -------------------------------

    cdef uint64_t find_capture(self, uint64_t frm, uint64_t to) noexcept nogil:
        """Sequence of the first whole "OggS" in [frm, to), or NOT_FOUND."""
        cdef uint64_t at
        while frm + 4 <= to:
            at = self.find_byte(CH_O, frm, to - 3)
            if at == NOT_FOUND:
                return NOT_FOUND
            if (self.byte_at(at + 1) == CH_G and self.byte_at(at + 2) == CH_G
                    and self.byte_at(at + 3) == CH_S):
                return at
            frm = at + 1
        return NOT_FOUND

    cdef uint64_t page_length_at(self, uint64_t at) noexcept nogil:
        """Length of the page whose header starts at `at` ("OggS" there): NEED_MORE while
        the header and lacing table are not all in, 0 if not a version-0 page."""
        cdef unsigned char head[OGG_HEADER + 255]
        cdef uint64_t avail = self.end - at, length
        cdef int nsegs, i
        if avail < OGG_HEADER:
            return NEED_MORE
        if self.byte_at(at + 4) != 0:
            return 0
        nsegs = self.byte_at(at + 26)
        if avail < <uint64_t>(OGG_HEADER + nsegs):
            return NEED_MORE
        self.peek(at + OGG_HEADER, nsegs, head)
        length = OGG_HEADER + nsegs
        for i in range(nsegs):
            length += head[i]
        return length

    cdef bint page_is_valid(self, uint64_t at, uint64_t length) noexcept nogil:
        """The CRC check of the page [at, at + length), all of it in the data area."""
        cdef unsigned char zero[4]
        cdef unsigned char stored[4]
        cdef uint32_t crc
        zero[:] = [0, 0, 0, 0]
        self.peek(at + 22, 4, stored)
        crc = self.crc_at(0, at, 22)
        crc = crc_update(crc, zero, 4)
        crc = self.crc_at(crc, at + 26, length - 26)
        return crc == ((<uint32_t>stored[3] << 24) | (<uint32_t>stored[2] << 16)
                       | (<uint32_t>stored[1] << 8) | stored[0])

    cdef bint complete_page_after(self, uint64_t frm) noexcept nogil:
        """True if a verified whole page starts at or after `frm`: then an incomplete
        candidate before it is a false start (a real page does not hold another one)."""
        cdef uint64_t at = self.find_capture(frm, self.end), length
        while at != NOT_FOUND:
            length = self.page_length_at(at)
            if (length != NEED_MORE and length != 0 and at + length <= self.end
                    and self.page_is_valid(at, length)):
                return True
            at = self.find_capture(at + 1, self.end)
        return False

    cdef int scan_pages(self) except -1:
        """Classify [scan, end) into pages and garbage; publish up to the last of them."""
        cdef uint64_t at, length
        cdef int keep
        while True:
            at = self.find_capture(self.scan, self.end)
            if at == NOT_FOUND:
                keep = self.capture_prefix_len()
                self.scan = self.end - keep
                break
            self.scan = at
            length = self.page_length_at(at)
            if length == NEED_MORE or self.end - at < length:
                if not self.complete_page_after(at + 1):
                    break                          # incomplete: wait for more data
                length = 0                         # a false start: resync after it
            if length and self.page_is_valid(at, length):
                self.on_page(at, length)
                self.scan = at + length
            else:
                self.scan = at + 1                 # a false "OggS" or a corrupt page
        self.publish(self.scan)
        return 0

    cdef int capture_prefix_len(self) noexcept nogil:
        """Length of the longest tail of [scan, end) that could begin a split "OggS"."""
        cdef uint64_t avail = self.end - self.scan
        if (avail >= 3 and self.byte_at(self.end - 3) == CH_O
                and self.byte_at(self.end - 2) == CH_G and self.byte_at(self.end - 1) == CH_G):
            return 3
        if avail >= 2 and self.byte_at(self.end - 2) == CH_O and self.byte_at(self.end - 1) == CH_G:
            return 2
        if avail >= 1 and self.byte_at(self.end - 1) == CH_O:
            return 1
        return 0

    # -- Ogg links (fanout/model/ogg.py's OggHeaderTracker) -----------------------------

    cdef void start_link(self) noexcept nogil:
        self.nstreams = 0
        self.header_pages = 0
        self.hdr_len = 0
        self.link_has_data = False
        self.pending = False
        self.skipped = False

    cdef int stream_index(self, uint32_t serial) noexcept nogil:
        cdef int i
        for i in range(self.nstreams):
            if self.serials[i] == serial:
                return i
        return -1

    cdef bint any_live(self) noexcept nogil:
        cdef int i
        for i in range(self.nstreams):
            if self.live[i]:
                return True
        return False

    cdef int on_page(self, uint64_t at, uint64_t length) except -1:
        cdef unsigned char head[OGG_HEADER]
        cdef int flags, i
        cdef int64_t granule
        cdef uint32_t serial
        self.peek(at, OGG_HEADER, head)
        flags = head[5]
        memcpy(&granule, head + 6, 8)              # little-endian host (ring layout)
        memcpy(&serial, head + 14, 4)
        if flags & FLAG_BOS and (self.link_has_data or (self.header_pages and not self.any_live())):
            self.start_link()
        i = self.stream_index(serial)
        if flags & FLAG_BOS or (i >= 0 and self.in_headers[i] and (granule == 0 or granule == -1)):
            self.header_page(at, length, serial, flags & FLAG_BOS)
        else:
            if i >= 0:
                self.in_headers[i] = False
            self.data_page(at, length)
        if flags & FLAG_EOS:
            i = self.stream_index(serial)
            if i >= 0:
                self.live[i] = False
        return 0

    cdef int header_page(self, uint64_t at, uint64_t length, uint32_t serial,
                         bint bos) except -1:
        cdef object reason
        self.header_pages += 1
        reason = self.admit(length, serial, bos)
        if self.skipped:
            return 0
        if reason is not None:
            self.hdr_len = 0
            self.skipped = self.pending = True
            self.events.append((EVENT_SKIPPED, reason))
            return 0
        self.reserve_header(self.hdr_len + length)
        self.peek(at, length, self.hdr + self.hdr_len)
        self.hdr_len += length
        self.pending = True
        return 0

    cdef object admit(self, uint64_t length, uint32_t serial, bint bos):
        """Count a header page against the bounds; return why the link's header set must
        be skipped, or None."""
        cdef int i = self.stream_index(serial)
        if bos and i < 0:
            if self.nstreams >= MAX_LINK_STREAMS_C:
                return _SKIP_STREAMS
            i = self.nstreams
            self.nstreams += 1
            self.serials[i] = serial
            self.stream_pages[i] = 0
            self.in_headers[i] = True
            self.live[i] = True
        self.stream_pages[i] += 1
        if self.stream_pages[i] > MAX_HEADER_PAGES_C:
            return _SKIP_PAGES
        if self.hdr_len + length > STREAM_HEADER_MAX:
            return _SKIP_BYTES
        return None

    cdef int reserve_header(self, size_t need) except -1:
        cdef size_t cap = self.hdr_cap if self.hdr_cap else 8192
        cdef unsigned char *grown
        if need <= self.hdr_cap:
            return 0
        while cap < need:
            cap *= 2
        if cap > STREAM_HEADER_MAX:
            cap = STREAM_HEADER_MAX
        grown = <unsigned char *>realloc(self.hdr, cap)
        if grown == NULL:
            raise MemoryError()
        self.hdr = grown
        self.hdr_cap = cap
        return 0

    cdef int data_page(self, uint64_t at, uint64_t length) except -1:
        self.link_has_data = True
        self.publish(at + length)
        if self.pending:
            self.pending = False
            header_write(self.base, self.hdr if self.hdr != NULL else <unsigned char *>b"",
                         self.hdr_len, at)
            self.events.append((EVENT_HEADERS, PyBytes_FromStringAndSize(
                <char *>self.hdr, self.hdr_len)))
        ring_add_sync(self.base, at)
        return 0


# -- FeedPoll: one waiting point for every feed of a process -------------------------------

cdef extern from "<sys/epoll.h>" nogil:
    cdef union epoll_data:
        void *ptr
        int fd
        uint32_t u32
        uint64_t u64
    cdef struct epoll_event:
        uint32_t events
        epoll_data data
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event *event)
    int epoll_wait(int epfd, epoll_event *events, int maxevents, int timeout)
    enum:
        EPOLLIN
        EPOLL_CTL_ADD
        EPOLL_CTL_DEL
        EPOLL_CLOEXEC

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    cdef struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clk_id, timespec *tp)
    enum:
        CLOCK_MONOTONIC

cdef extern from "<unistd.h>" nogil:
    int close(int fd)

POLL_BATCH = 256             # FeedPoll.service: ready sockets handled per epoll_wait

# What a member needs from Python (FeedPoll.take's `flags`), once set until taken.
FEED_EOF = 1                 # the peer closed (the socket is out of the set)
FEED_ERROR = 2               # read(2) failed (`err` has the errno; out of the set)
FEED_EVENTS = 4              # the ingest queued events (take_events)
FEED_PACED = 8               # it read its pace limit this window (out of the set: rearm)
FEED_IDLE = 16               # nothing read for its timeout (FeedPoll.sweep)


cdef int64_t monotonic_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef class _Member:
    cdef Ingest ingest
    cdef int fd
    cdef bint armed                # in the epoll set
    cdef Py_ssize_t count          # bytes read since the last take
    cdef int flags                 # FEED_* since the last take
    cdef int err
    cdef int64_t last_data         # monotonic ns of the last bytes read (or of add)
    cdef int64_t idle_ns           # FEED_IDLE after this long without bytes (0: never)
    cdef Py_ssize_t pace_bytes     # at most this many bytes per pace window (0: no pace)
    cdef int64_t pace_ns
    cdef int64_t window_start
    cdef Py_ssize_t window_bytes


cdef class FeedPoll:
    """Every socket a process's feeds read, in one epoll set: `service` (when its fd is
    readable) reads each ready socket straight into its Ingest, in C, and returns only
    the fds whose owner must act - the peer closed, a read failed, the ingest queued
    events, a pace limit was reached - so a steady stream costs no Python call per read.
    `sweep` (on a timer) flags the members silent for their idle timeout.
    """

    cdef int epfd
    cdef dict members              # fd -> _Member
    cdef epoll_event ready[256]

    def __cinit__(self):
        self.epfd = -1

    def __init__(self):
        self.epfd = epoll_create1(EPOLL_CLOEXEC)
        if self.epfd < 0:
            raise OSError(errno, os.strerror(errno))
        self.members = {}

    def __dealloc__(self):
        if self.epfd >= 0:
            close(self.epfd)
            self.epfd = -1

    def close(self):
        """Close the epoll set (idempotent); the members' sockets stay open."""
        self.members = {}
        if self.epfd >= 0:
            close(self.epfd)
            self.epfd = -1

    def fileno(self):
        """The epoll fd: readable while a member has something to read."""
        return self.epfd

    def __len__(self):
        return len(self.members)

    def add(self, int fd, Ingest ingest, *, double idle=0.0, Py_ssize_t pace_bytes=0,
            double pace_window=0.0):
        """Read the non-blocking `fd` into `ingest` whenever it is readable. `idle`: flag
        FEED_IDLE after that many seconds without a byte (0: never); `pace_bytes`: stop
        reading it (FEED_PACED) once that many bytes came in one `pace_window` seconds.
        Raises ValueError if `fd` is already a member, OSError if epoll refuses it."""
        if fd in self.members:
            raise ValueError(f"fd {fd} is already in the poll")
        cdef _Member m = _Member()
        m.ingest, m.fd = ingest, fd
        m.idle_ns = <int64_t>(idle * 1e9)
        m.pace_bytes, m.pace_ns = pace_bytes, <int64_t>(pace_window * 1e9)
        m.last_data = m.window_start = monotonic_ns()
        self.arm(m)
        self.members[fd] = m

    def remove(self, int fd):
        """Forget `fd` (idempotent); it stays open."""
        cdef _Member m = self.members.pop(fd, None)
        if m is not None:
            self.disarm(m)

    def rearm(self, int fd):
        """Read a paced member again, with a fresh pace window."""
        cdef _Member m = self.members[fd]
        m.window_start, m.window_bytes = monotonic_ns(), 0
        if not m.armed and not m.flags & (FEED_EOF | FEED_ERROR):
            self.arm(m)

    def take(self, int fd):
        """(bytes read, FEED_* flags, errno) since the last take, and reset them."""
        cdef _Member m = self.members[fd]
        result = (m.count, m.flags, m.err)
        m.count, m.flags, m.err = 0, 0, 0
        return result

    def silent(self, int fd):
        """Seconds since `fd` last gave bytes (or was added)."""
        cdef _Member m = self.members[fd]
        return (monotonic_ns() - m.last_data) / 1e9

    def service(self):
        """Read every ready member into its ingest; the fds newly needing their owner."""
        cdef list out = []
        cdef int n = POLL_BATCH, i
        if self.epfd < 0:
            return out
        while n == POLL_BATCH:
            n = epoll_wait(self.epfd, self.ready, POLL_BATCH, 0)
            if n < 0:
                if errno == EINTR:
                    PyErr_CheckSignals()
                    n = POLL_BATCH
                    continue
                raise OSError(errno, os.strerror(errno))
            for i in range(n):
                self.read_member(self.ready[i].data.fd, out)
        return out

    def sweep(self):
        """Flag FEED_IDLE on the members silent for their idle timeout (reading what is
        ready first, so bytes that arrived while the process was stopped count); the fds
        newly needing their owner."""
        cdef list out = self.service()
        cdef int64_t now = monotonic_ns()
        cdef _Member m
        for m in self.members.values():
            if m.idle_ns and m.armed and now - m.last_data >= m.idle_ns:
                self.flag(m, FEED_IDLE, out)
        return out

    # -- C side ---------------------------------------------------------------------------

    cdef int read_member(self, int fd, list out) except -1:
        cdef _Member m = self.members.get(fd)
        cdef Py_ssize_t n
        cdef int64_t now
        if m is None or not m.armed:
            return 0
        try:
            n = m.ingest.read_fd(fd, FEED_FD_MAX)
        except OSError as exc:
            m.err = exc.errno or 0
            self.disarm(m)
            self.flag(m, FEED_ERROR, out)
            return 0
        if n == READ_AGAIN:
            return 0
        if n == READ_EOF:
            self.disarm(m)
            self.flag(m, FEED_EOF, out)
            return 0
        now = monotonic_ns()
        m.count += n
        m.last_data = now
        if m.ingest.events:
            self.flag(m, FEED_EVENTS, out)
        if m.pace_bytes:
            if now - m.window_start >= m.pace_ns:
                m.window_start, m.window_bytes = now, 0
            m.window_bytes += n
            if m.window_bytes >= m.pace_bytes:
                self.disarm(m)
                self.flag(m, FEED_PACED, out)
        return 0

    cdef void flag(self, _Member m, int flag, list out) except *:
        if not m.flags:
            out.append(m.fd)
        m.flags |= flag

    cdef int arm(self, _Member m) except -1:
        cdef epoll_event ev
        ev.events = EPOLLIN
        ev.data.u64 = 0
        ev.data.fd = m.fd
        if epoll_ctl(self.epfd, EPOLL_CTL_ADD, m.fd, &ev) < 0:
            raise OSError(errno, os.strerror(errno))
        m.armed = True
        return 0

    cdef void disarm(self, _Member m) noexcept:
        cdef epoll_event ev
        if m.armed:
            epoll_ctl(self.epfd, EPOLL_CTL_DEL, m.fd, &ev)  # fails only if fd was closed
            m.armed = False
