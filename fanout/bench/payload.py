"""The self-identifying bench stream, and the pure-Python reference of its verifier.

Theory of operation. The feeder sends a stream of identical-size MPEG-1 Layer III
frames (128 kbit/s, 48 kHz, mono, no padding: exactly ``FRAME_SIZE`` = 384 bytes).
Their side information is all zero, so a decoder plays silence and ignores the rest
of the frame, which we use as ancillary data::

    0   4-byte MPEG header            FF FB 94 C0
    4   17 bytes side info            zero
    21  magic                         b"FOB1"
    25  frame counter                 u64 little-endian, +1 per frame
    33  send timestamp                u64 little-endian, CLOCK_MONOTONIC ns
    41  checksum                      u32 little-endian, mix of counter and timestamp
    45  filler                        fixed printable bytes (never 0x00 nor 0xFF)

Every byte is thereby checked: the fixed bytes against ``TEMPLATE``, the variable
ones through the checksum. The filler is non-zero so that an ICY block read at a
wrong position sees a non-zero length byte and fails its own check.

``StreamVerifier`` checks what one listener received. It is a two-layer state
machine driven by byte counts only (any split of the input gives the same result):
the ICY layer strips ``[len][16*len bytes]`` blocks every ``metaint`` audio bytes and
checks each one; the frame layer is *hunting* (looking for a position where a whole
frame verifies; the server may start a listener anywhere) or *locked* (every next
``FRAME_SIZE`` bytes must verify with counter = previous + 1). A frame that fails
while locked is a corruption; two in a row mean the alignment is lost, and the
verifier hunts again from inside the second failed slot. A verified frame whose
counter is ahead of the expected one is a gap (after a resync, the frames of the
failed slots are excused), behind it a duplicate. The compiled swarm (``fanout.bench._swarm``)
implements the very same machine in C; tests run both over the same streams.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

FRAME_SIZE = 384  # 144 * 128000 / 48000, no padding
FRAME_NS = 24_000_000  # 1152 samples at 48 kHz
BITRATE = 128_000  # what the frame headers say
HEADER = b"\xff\xfb\x94\xc0"  # MPEG-1 Layer III, no CRC, 128 kbit/s, 48 kHz, mono
SIDE_INFO_SIZE = 17  # mono
MAGIC = b"FOB1"
MAGIC_AT = len(HEADER) + SIDE_INFO_SIZE  # 21
COUNTER_AT = MAGIC_AT + len(MAGIC)  # 25
STAMP_AT = COUNTER_AT + 8  # 33
CHECK_AT = STAMP_AT + 8  # 41
FILLER_AT = CHECK_AT + 4  # 45
_FIELDS = struct.Struct("<QQI")  # counter, stamp, checksum

_MASK64 = (1 << 64) - 1
_MIX_KEY = 0x9E3779B97F4A7C15  # golden-ratio odd constant (splitmix64)


def _filler_byte(offset: int) -> int:
    return 0x20 + offset % 0x5F  # printable ASCII: neither NUL nor 0xFF


TEMPLATE = (
    HEADER + bytes(SIDE_INFO_SIZE) + MAGIC + bytes(FILLER_AT - COUNTER_AT)
    + bytes(_filler_byte(i) for i in range(FILLER_AT, FRAME_SIZE))
)
assert len(TEMPLATE) == FRAME_SIZE


def checksum(counter: int, stamp: int) -> int:
    """Return the 32-bit check of a frame's counter and timestamp (splitmix64 finaliser)."""
    z = (counter * _MIX_KEY ^ stamp) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) & 0xFFFFFFFF


def build_frame(counter: int, stamp: int) -> bytes:
    """Return the frame carrying ``counter`` and send time ``stamp`` (ns)."""
    frame = bytearray(TEMPLATE)
    _FIELDS.pack_into(frame, COUNTER_AT, counter, stamp, checksum(counter, stamp))
    return bytes(frame)


def build_frames(first: int, count: int, stamp: int) -> bytes:
    """Return ``count`` consecutive frames from counter ``first``, all stamped ``stamp``."""
    return b"".join(build_frame(first + i, stamp) for i in range(count))


def parse_frame(frame: bytes | bytearray | memoryview) -> tuple[int, int] | None:
    """Return (counter, stamp) of a valid frame, or None if any byte is wrong."""
    if len(frame) != FRAME_SIZE:
        return None
    if frame[:COUNTER_AT] != TEMPLATE[:COUNTER_AT] or frame[FILLER_AT:] != TEMPLATE[FILLER_AT:]:
        return None
    counter, stamp, check = _FIELDS.unpack_from(frame, COUNTER_AT)
    return (counter, stamp) if check == checksum(counter, stamp) else None


# ---------------------------------------------------------------------------------
# ICY blocks as the bench checks them (PROTOCOL.md §5.3)

ICY_PREFIX = b"StreamTitle='"


def icy_block(text: bytes) -> bytes:
    """Return the ICY block for ``text``: length byte, text, NUL padding (>= 1 NUL)."""
    units = len(text) // 16 + 1
    return bytes([units]) + text.ljust(units * 16, b"\0")


def insert_icy(audio: bytes, metaint: int, blocks: list[bytes]) -> bytes:
    """Return ``audio`` as a listener with ``Icy-MetaData: 1`` receives it.

    ``blocks[i]`` follows the (i+1)-th ``metaint`` audio bytes; when blocks run out,
    ``b"\\0"`` (unchanged) is used.
    """
    out = bytearray()
    for n, start in enumerate(range(0, len(audio), metaint)):
        chunk = audio[start:start + metaint]
        out += chunk
        if len(chunk) == metaint:
            out += blocks[n] if n < len(blocks) else b"\0"
    return bytes(out)


# ---------------------------------------------------------------------------------
# Latency / TTFB histograms: log-linear buckets of microseconds, ~6 % wide.

SUB_BUCKETS = 16
HIST_SIZE = 640  # covers up to 2**43 µs, far beyond any run


def hist_index(value_us: int) -> int:
    """Return the histogram bucket of a non-negative value in µs."""
    if value_us < SUB_BUCKETS:
        return max(value_us, 0)
    exp = value_us.bit_length() - 1  # >= 4
    sub = (value_us >> (exp - 4)) & (SUB_BUCKETS - 1)
    return min(SUB_BUCKETS + (exp - 4) * SUB_BUCKETS + sub, HIST_SIZE - 1)


def hist_low(index: int) -> int:
    """Return the smallest value (µs) that lands in bucket ``index``."""
    if index < SUB_BUCKETS:
        return index
    exp, sub = divmod(index - SUB_BUCKETS, SUB_BUCKETS)
    return (SUB_BUCKETS + sub) << exp


def hist_percentile(counts: list[int], fraction: float) -> float | None:
    """Return the value (µs, bucket middle) below which ``fraction`` of samples lie."""
    total = sum(counts)
    if total == 0:
        return None
    rank = max(1, round(fraction * total))
    seen = 0
    for index, count in enumerate(counts):
        seen += count
        if seen >= rank:
            return (hist_low(index) + hist_low(index + 1)) / 2
    return float(hist_low(len(counts)))


# ---------------------------------------------------------------------------------
# The verifier (reference implementation; the swarm's C twin has the same counters)

COUNTERS = (
    "body_bytes", "audio_bytes", "verified_bytes", "frames_ok", "corrupt_frames",
    "gaps", "missing_frames", "duplicates", "resyncs", "skipped_bytes",
    "icy_blocks", "icy_errors",
)


@dataclass(slots=True)
class StreamVerifier:
    """Checks one listener's body; ``metaint`` 0 means no ICY blocks expected."""

    metaint: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    latency_hist: list[int] = field(default_factory=lambda: [0] * HIST_SIZE)
    _audio_left: int = 0
    _meta_left: int = -1  # -1: in audio; 0: length byte next; >0: block bytes left
    _meta_pos: int = 0
    _meta_bad: bool = False
    _pending: bytearray = field(default_factory=bytearray)
    _locked: bool = False
    _started: bool = False
    _expected: int = 0
    _bad_run: int = 0
    _slack: int = 0

    def __post_init__(self) -> None:
        self._audio_left = self.metaint

    def feed(self, data: bytes, now_ns: int) -> None:
        """Account for ``data`` received at ``now_ns`` (CLOCK_MONOTONIC)."""
        self.counts["body_bytes"] += len(data)
        if not self.metaint:
            self._feed_audio(data, now_ns)
            return
        pos = 0
        while pos < len(data):
            pos = self._feed_icy(data, pos, now_ns)

    def errors(self) -> int:
        """Return the number of error events (corrupt, gap, duplicate, ICY)."""
        c = self.counts
        return c["corrupt_frames"] + c["gaps"] + c["duplicates"] + c["icy_errors"]

    def _feed_icy(self, data: bytes, pos: int, now_ns: int) -> int:
        if self._meta_left < 0:
            take = min(self._audio_left, len(data) - pos)
            self._feed_audio(data[pos:pos + take], now_ns)
            self._audio_left -= take
            if self._audio_left == 0:
                self._meta_left = 0
            return pos + take
        if self._meta_left == 0:
            self.counts["icy_blocks"] += 1
            self._meta_left, self._meta_pos, self._meta_bad = data[pos] * 16, 0, False
            if self._meta_left == 0:
                self._end_block()
            return pos + 1
        take = min(self._meta_left, len(data) - pos)
        for byte in data[pos:pos + take]:
            self._check_meta_byte(byte)
        if self._meta_left == 0:
            self._end_block()
        return pos + take

    def _check_meta_byte(self, byte: int) -> None:
        if self._meta_pos < len(ICY_PREFIX) and byte != ICY_PREFIX[self._meta_pos]:
            self._meta_bad = True
        self._meta_pos += 1
        self._meta_left -= 1
        if self._meta_left == 0 and byte != 0:
            self._meta_bad = True  # a block always ends with at least one NUL

    def _end_block(self) -> None:
        if self._meta_bad:
            self.counts["icy_errors"] += 1
        self._meta_left, self._audio_left = -1, self.metaint

    def _feed_audio(self, data: bytes, now_ns: int) -> None:
        self.counts["audio_bytes"] += len(data)
        self._pending += data
        while len(self._pending) >= FRAME_SIZE:
            if self._locked:
                lost = self._check_locked(bytes(self._pending[:FRAME_SIZE]), now_ns)
                # hunt again from inside the slot that failed: the next frame may start there
                del self._pending[:1 if lost else FRAME_SIZE]
                self.counts["skipped_bytes"] += lost
            else:
                self._hunt(now_ns)

    def _hunt(self, now_ns: int) -> None:
        parsed = parse_frame(self._pending[:FRAME_SIZE])
        if parsed is not None:
            self._locked = True
            self._accept(*parsed, now_ns)
            del self._pending[:FRAME_SIZE]
            return
        skip = self._pending.find(b"\xff", 1, FRAME_SIZE)
        skip = FRAME_SIZE if skip < 0 else skip
        self.counts["skipped_bytes"] += skip
        del self._pending[:skip]

    def _check_locked(self, frame: bytes, now_ns: int) -> bool:
        """Check the next frame slot; return whether the alignment was lost."""
        parsed = parse_frame(frame)
        if parsed is not None:
            self._accept(*parsed, now_ns)
            return False
        self.counts["corrupt_frames"] += 1
        self._expected += 1  # assume the slot held the expected frame
        self._bad_run += 1
        if self._bad_run < 2:
            return False
        # The failed slots may have held the expected frames, or bytes inserted before
        # them: whichever frame the hunt finds next, up to bad_run frames are excused.
        self._locked, self._slack = False, self._bad_run
        self._expected -= self._bad_run
        self.counts["resyncs"] += 1
        return True

    def _accept(self, counter: int, stamp: int, now_ns: int) -> None:
        c = self.counts
        if self._started and counter > self._expected + self._slack:
            c["gaps"] += 1
            c["missing_frames"] += counter - self._expected - self._slack
        elif self._started and counter < self._expected:
            c["duplicates"] += 1
        self._started, self._expected, self._bad_run, self._slack = True, counter + 1, 0, 0
        c["frames_ok"] += 1
        c["verified_bytes"] += FRAME_SIZE
        self.latency_hist[hist_index(max(now_ns - stamp, 0) // 1000)] += 1
