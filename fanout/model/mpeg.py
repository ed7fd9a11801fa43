"""MPEG audio (layers I–III, MPEG-1/2/2.5) and ADTS AAC frame boundaries.

Theory of operation. ``MpegFrameTracker`` has two states. *Hunting*: it looks for a
byte 0xFF whose header validates and whose next frame (at the computed length) also
validates with the same stream parameters; only then is the first frame trusted
(a lone valid-looking header inside audio data is common). *Locked*: it follows the
frame lengths, reporting each frame start whose header validates and matches; any
mismatch (garbage, an ID3 tag, a stream change) drops back to hunting from that
position. It keeps only the bytes it has not yet looked past, so memory stays at
about one frame whatever the split of the input.
"""

from __future__ import annotations

from collections.abc import Callable

MPEG = "mpeg"
ADTS = "adts"

# Bitrates in kbit/s by bitrate index 1..14 (0 = free format and 15 are rejected).
_MPEG1_KBPS = {
    3: (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),  # layer I
    2: (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),  # layer II
    1: (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),  # layer III
}
_MPEG2_KBPS = {
    3: (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),  # layer I
    2: (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),  # layer II
    1: (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),  # layer III
}
# Sample rates by version bits (0 = MPEG-2.5, 1 reserved, 2 = MPEG-2, 3 = MPEG-1).
_SAMPLE_RATES = {0: (11025, 12000, 8000), 2: (22050, 24000, 16000), 3: (44100, 48000, 32000)}
_LAYER_I = 3
_LAYER_III = 1
_MPEG1 = 3

ADTS_HEADER_SIZE = 7  # without the optional CRC
# Samples per MPEG frame by layer bits (MPEG-1; layer III of MPEG-2/2.5 holds half).
_SAMPLES = {3: 384, 2: 1152, 1: 1152}
# Samples per raw data block of an ADTS frame (AAC), and the sample rates by index.
_ADTS_SAMPLES = 1024
_ADTS_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025,
               8000, 7350)
_ADTS_CRC_SIZE = 2
_ADTS_RESERVED_RATE = 13  # sampling frequency indexes 13..15 are reserved


def frame_length(header4: bytes | bytearray) -> int | None:
    """Return the length in bytes of the MPEG audio frame with this 4-byte header.

    Returns None unless the header is valid: 11 sync bits, no reserved version or
    layer, bitrate index neither 0 (free format) nor 15, no reserved sample rate.
    """
    b1, b2 = header4[1], header4[2]
    if header4[0] != 0xFF or b1 & 0xE0 != 0xE0:
        return None
    version, layer = (b1 >> 3) & 3, (b1 >> 1) & 3
    bitrate_index, rate_index = b2 >> 4, (b2 >> 2) & 3
    if version == 1 or layer == 0 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    table = _MPEG1_KBPS if version == _MPEG1 else _MPEG2_KBPS
    bitrate = table[layer][bitrate_index - 1] * 1000
    sample_rate = _SAMPLE_RATES[version][rate_index]
    padding = (b2 >> 1) & 1
    if layer == _LAYER_I:
        return (12 * bitrate // sample_rate + padding) * 4
    if layer == _LAYER_III and version != _MPEG1:
        return 72 * bitrate // sample_rate + padding  # half the samples per frame
    return 144 * bitrate // sample_rate + padding


def adts_frame_length(header: bytes | bytearray) -> int | None:
    """Return the length of the ADTS frame with this header (first 6 bytes used).

    Returns None unless: 12 sync bits, layer 0, sampling frequency not reserved, and
    the 13-bit frame length covers at least the header (and its CRC, if present).
    """
    b1 = header[1]
    if header[0] != 0xFF or b1 & 0xF6 != 0xF0:
        return None
    if (header[2] >> 2) & 0xF >= _ADTS_RESERVED_RATE:
        return None
    length = ((header[3] & 0x03) << 11) | (header[4] << 3) | (header[5] >> 5)
    minimum = ADTS_HEADER_SIZE + (0 if b1 & 0x01 else _ADTS_CRC_SIZE)
    return length if length >= minimum else None


def frame_duration(header4: bytes | bytearray) -> float | None:
    """Seconds of audio in the MPEG frame with this 4-byte header (None: not a valid one)."""
    if frame_length(header4) is None:
        return None
    version, layer = (header4[1] >> 3) & 3, (header4[1] >> 1) & 3
    samples = _SAMPLES[layer] // (2 if layer == _LAYER_III and version != _MPEG1 else 1)
    return samples / _SAMPLE_RATES[version][(header4[2] >> 2) & 3]


def adts_frame_duration(header: bytes | bytearray) -> float | None:
    """Seconds of audio in the ADTS frame with this 7-byte header (None: not a valid one)."""
    if len(header) < ADTS_HEADER_SIZE or adts_frame_length(header) is None:
        return None
    blocks = (header[6] & 0x03) + 1
    return blocks * _ADTS_SAMPLES / _ADTS_RATES[(header[2] >> 2) & 0xF]


def byte_rate(data: bytes, kind: str = MPEG) -> float | None:
    """Bytes per second of playback of the chained frames of `kind` (MPEG or ADTS) in
    `data`, measured from its first frame to its last whole one (a VBR file's average over
    them); None with fewer than two frames."""
    need, duration_of = {MPEG: (4, frame_duration), ADTS: (ADTS_HEADER_SIZE, adts_frame_duration)}[kind]
    starts = MpegFrameTracker(kind).feed(data)
    seconds = sum(duration_of(data[at:at + need]) or 0.0 for at in starts[:-1])
    if len(starts) < 2 or seconds <= 0:
        return None
    return (starts[-1] - starts[0]) / seconds


def _mpeg_stream_key(header: bytes | bytearray) -> bytes:
    # Version, layer and sample rate stay put within a stream (as ffmpeg's check);
    # bitrate and padding may change from frame to frame.
    return bytes((header[1] & 0xFE, header[2] & 0x0C))


def _adts_stream_key(header: bytes | bytearray) -> bytes:
    # ID, layer, profile, sampling frequency and channel configuration.
    return bytes((header[1] & 0xFE, header[2] & 0xFD, header[3] & 0xC0))


_Kind = tuple[int, Callable[[bytearray], "int | None"], Callable[[bytearray], bytes]]
_KINDS: dict[str, _Kind] = {
    MPEG: (4, frame_length, _mpeg_stream_key),
    ADTS: (6, adts_frame_length, _adts_stream_key),
}


class MpegFrameTracker:
    """Reports absolute offsets of frame starts in a stream of MPEG or ADTS frames."""

    def __init__(self, kind: str = MPEG) -> None:
        if kind not in _KINDS:
            raise ValueError(f"unknown frame kind {kind!r}, expected one of {sorted(_KINDS)}")
        self._need, self._length_of, self._key_of = _KINDS[kind]
        self._buf = bytearray()
        self._base = 0  # absolute offset of self._buf[0]
        self._pos = 0  # absolute offset of the next byte to examine
        self._key: bytes | None = None  # stream parameters while locked

    def feed(self, data: bytes) -> list[int]:
        """Append ``data``; return absolute offsets of the frames found, ascending."""
        self._buf += data
        starts: list[int] = []
        while self._has_header_at(self._pos):
            if self._key is None:
                if not self._hunt():
                    break
                continue
            header = self._header_at(self._pos)
            length = self._length_of(header)
            if length is None or self._key_of(header) != self._key:
                self._key = None  # lost the frame chain: hunt again from here
                continue
            starts.append(self._pos)
            self._pos += length
        self._trim()
        return starts

    def _hunt(self) -> bool:
        """Find two chained frames from ``_pos``; lock on the first. False: need data."""
        while True:
            hit = self._buf.find(b"\xff", self._pos - self._base)
            if hit < 0:
                self._pos = self._base + len(self._buf)
                return False
            self._pos = self._base + hit
            if not self._has_header_at(self._pos):
                return False
            header = self._header_at(self._pos)
            length = self._length_of(header)
            if length is not None:
                following = self._pos + length
                if not self._has_header_at(following):
                    return False
                if self._header_follows(following, self._key_of(header)):
                    self._key = self._key_of(header)
                    return True
            self._pos += 1

    def _header_follows(self, at: int, key: bytes) -> bool:
        header = self._header_at(at)
        return self._length_of(header) is not None and self._key_of(header) == key

    def _has_header_at(self, at: int) -> bool:
        return at + self._need <= self._base + len(self._buf)

    def _header_at(self, at: int) -> bytearray:
        start = at - self._base
        return self._buf[start : start + self._need]

    def _trim(self) -> None:
        drop = min(self._pos - self._base, len(self._buf))
        del self._buf[:drop]
        self._base += drop
