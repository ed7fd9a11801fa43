"""An Ogg Vorbis or Opus file played in a loop as one chained stream, and its timing.

Theory of operation. ``OggLoop`` is fed the file's bytes, pass after pass (``next_pass``
between two), and returns the pages a listener is to get, each whole. Each pass is a link
of a chained stream: its pages keep their order and packets, but every logical stream's
serial number is the file's plus the pass number (modulo 2**32), and its granule
positions continue where that stream's previous pass ended (header pages keep granule 0:
that is how the ingest tells them). 2.4.4 sends the same bytes again; ffmpeg (and so mpv
and most players on it) then reads the next pass's header packets as audio (a BOS page of
a serial it knows is no new stream to it) and decodes an Opus link as garbage, and
granules that start again give it timestamps that go back.

``seconds`` is how much audio the pages returned so far hold, by the granules of the
*timed* stream: the first one whose BOS page names its sample rate (Opus: granules count
48 kHz samples; Vorbis: the rate in its identification header). A granule step that goes
back, or leaps more than MAX_PAGE_SECONDS (a file cut from a stream starts at a large
granule; a corrupt page), counts as no time and is the next step's reference: pacing on it
would stall every listener. The pre-skip of Opus (a few ms per pass) is counted as audio.
"""

from __future__ import annotations

import struct

from fanout.model.ogg import HEADER_SIZE, OggPage, OggPageScanner, ogg_crc

OPUS_RATE = 48000  # Opus granules count 48 kHz samples whatever the input's rate (RFC 7845)
# Seconds one page may add to the clock: an Opus page holds at most 255 packets of 120 ms
# (30.6 s); a larger step is a discontinuity, not audio.
MAX_PAGE_SECONDS = 60
SERIALS = 1 << 32  # serial numbers are 32-bit

_OPUS_HEAD = b"OpusHead"
_VORBIS_ID = b"\x01vorbis"
_VORBIS_RATE = struct.Struct("<I")  # the identification header's sample rate, bytes 12..15
_VORBIS_ID_SIZE = 16  # bytes of the identification packet up to its sample rate
_GRANULE_SERIAL = struct.Struct("<qI")  # at byte 6 of a page
_GRANULE_AT = 6
_CRC_AT = 22


def page_body(page: OggPage) -> bytes:
    """The packet bytes of ``page`` (after its header and lacing table)."""
    return page.data[HEADER_SIZE + page.data[HEADER_SIZE - 1]:]


def granule_rate(page: OggPage) -> int | None:
    """Granules per second of the logical stream whose BOS page is ``page``: Opus or
    Vorbis; None for any other page (another codec, not a BOS page, a short header)."""
    if not page.bos:
        return None
    body = page_body(page)
    if body.startswith(_OPUS_HEAD):
        return OPUS_RATE
    if body.startswith(_VORBIS_ID) and len(body) >= _VORBIS_ID_SIZE:
        rate: int = _VORBIS_RATE.unpack_from(body, 12)[0]
        return rate or None
    return None


def relabelled(page: OggPage, serial: int, granule: int) -> bytes:
    """``page``'s bytes with that serial number and granule position (CRC made anew)."""
    data = bytearray(page.data)
    _GRANULE_SERIAL.pack_into(data, _GRANULE_AT, granule, serial)
    data[_CRC_AT:_CRC_AT + 4] = bytes(4)
    data[_CRC_AT:_CRC_AT + 4] = ogg_crc(bytes(data)).to_bytes(4, "little")
    return bytes(data)


class OggLoop:
    """The pages and the seconds of audio of an Ogg file played in a loop (see above)."""

    def __init__(self) -> None:
        self.seconds = 0.0  # audio in the pages returned so far
        self._scanner = OggPageScanner()
        self._pass = 0
        self._bases: dict[int, int] = {}  # file serial -> granule offset of this pass
        self._ends: dict[int, int] = {}  # file serial -> its last granule in this pass
        self._timed: int | None = None  # file serial of the timed stream
        self._rate = 0
        self._last = 0  # the timed stream's last granule in this pass (as in the file)

    def feed(self, data: bytes) -> bytes:
        """The whole pages ``data`` completes (a partial one waits), relabelled."""
        return b"".join(self._page(page) for page in self._scanner.feed(data))

    def next_pass(self) -> None:
        """The file starts again: the next pages are a new link (a partial page of the
        last pass is dropped)."""
        for serial, end in self._ends.items():
            self._bases[serial] = self._bases.get(serial, 0) + end
        self._ends.clear()
        self._scanner = OggPageScanner()
        self._pass += 1
        self._last = 0

    def _page(self, page: OggPage) -> bytes:
        if self._timed is None and (rate := granule_rate(page)) is not None:
            self._timed, self._rate = page.serial, rate
        granule = page.granule
        if granule > 0:
            self._ends[page.serial] = granule
            if page.serial == self._timed:
                self._tick(granule)
            granule += self._bases.get(page.serial, 0)
        return relabelled(page, (page.serial + self._pass) % SERIALS, granule)

    def _tick(self, granule: int) -> None:
        step = granule - self._last
        self._last = granule
        if 0 <= step <= MAX_PAGE_SECONDS * self._rate:
            self.seconds += step / self._rate
