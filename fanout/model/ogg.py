"""Ogg pages (RFC 3533): a resynchronising page scanner and header-page tracking.

Theory of operation. ``OggPageScanner`` keeps the bytes it has not yet classified.
Each ``feed`` appends to them and then repeatedly: skips to the next ``OggS``, waits
until the 27-byte header, the lacing table and the body are all there, and checks
the CRC. A valid page is returned and dropped from the buffer; anything else
(garbage, a bad version, a CRC mismatch) is skipped one byte at a time, so the next
``OggS`` is tried. A candidate still waiting for its body is also dropped as soon
as a complete verified page shows up after it (a false ``OggS`` in garbage must not
hold data back until its bogus length arrives). The buffer therefore never holds
more than one incomplete page (at most ``MAX_PAGE_SIZE`` bytes) plus the last feed,
and ``consumed`` tells how far the input has been classified as pages or garbage.

``OggHeaderTracker`` follows the logical streams of a physical stream. A stream's
header pages are its BOS page and its following pages up to the first one whose
granule position is neither 0 nor -1. A "link" is one group of concurrently
multiplexed streams; a BOS page after the link carried data, or after all of its
streams ended, starts a new link (a chained stream). The link's header set
(all its header pages, in order) is handed out once, at its first data page: a
listener starting at that page or later needs exactly that set.

What the tracker keeps is bounded: at most ``MAX_LINK_STREAMS`` streams per link,
``MAX_HEADER_PAGES`` header pages per stream and ``MAX_HEADER_SET`` bytes per set. A
link beyond any of them has its header set skipped: the reason is reported once, and
its first data page hands out an empty set (so no listener is ever given the header
pages of another link).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

CAPTURE_PATTERN = b"OggS"
HEADER_SIZE = 27  # fixed part of a page header, before the lacing table
MAX_PAGE_SIZE = HEADER_SIZE + 255 + 255 * 255  # 65307: 255 segments of 255 bytes
# Larger header sets are skipped: they would not fit the ring's Ogg header area
# (ARCHITECTURE.md: HEADER_SIZE 131072 minus the 8208-byte offset of the area).
MAX_HEADER_SET = 131072 - 8208
# Header pages of one logical stream: Vorbis, Opus, FLAC and Theora need 2-3 packets
# (a set filling MAX_HEADER_SET takes ~30 of libogg's 4 KiB pages); more is an attack.
MAX_HEADER_PAGES = 64
# Logical streams multiplexed in one link (audio, video, skeleton...): more is an attack
# (BOS pages with ever new serial numbers), and each one costs tracker state.
MAX_LINK_STREAMS = 16

FLAG_CONTINUED = 0x01
FLAG_BOS = 0x02
FLAG_EOS = 0x04

_FIXED_HEADER = struct.Struct("<4sBBqIIIB")  # magic, version, flags, granule, serial, seqno, crc, nsegs
_NO_GRANULE = -1  # granule of a page on which no packet ends

# The Ogg CRC is the non-reflected CRC-32 (polynomial 0x04c11db7, init 0, no final
# xor). It equals the bit-reversal of the reflected CRC (zlib's) of the input with
# every byte bit-reversed, which lets zlib's C loop do the work: a Python table loop
# would cost about a microsecond per byte on every Ogg source.
_REVERSED_BYTES = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def ogg_crc(data: bytes) -> int:
    """Return the Ogg CRC-32 of ``data`` (the page with its CRC field zeroed)."""
    reflected = zlib.crc32(data.translate(_REVERSED_BYTES), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int.from_bytes(reflected.to_bytes(4, "little").translate(_REVERSED_BYTES), "big")


@dataclass(frozen=True, slots=True)
class OggPage:
    """One verified page. ``offset`` is absolute in the stream fed to the scanner."""

    offset: int
    length: int
    bos: bool
    eos: bool
    continued: bool
    granule: int
    serial: int
    seqno: int
    data: bytes


def page_length(head: bytes | bytearray) -> int | None:
    """Return the total length of the page whose header starts ``head``.

    Returns None while ``head`` is too short to tell, 0 if it is not a version-0
    Ogg page header.
    """
    if len(head) < HEADER_SIZE:
        return None
    if head[:4] != CAPTURE_PATTERN or head[4] != 0:
        return 0
    nsegs = head[26]
    if len(head) < HEADER_SIZE + nsegs:
        return None
    return HEADER_SIZE + nsegs + sum(head[HEADER_SIZE : HEADER_SIZE + nsegs])


def parse_page(data: bytes, offset: int) -> OggPage | None:
    """Return the page that is exactly ``data``, or None if its CRC does not match."""
    _magic, _version, flags, granule, serial, seqno, crc, _nsegs = _FIXED_HEADER.unpack_from(data)
    if ogg_crc(data[:22] + b"\0\0\0\0" + data[26:]) != crc:
        return None
    return OggPage(
        offset=offset,
        length=len(data),
        bos=bool(flags & FLAG_BOS),
        eos=bool(flags & FLAG_EOS),
        continued=bool(flags & FLAG_CONTINUED),
        granule=granule,
        serial=serial,
        seqno=seqno,
        data=data,
    )


def _magic_prefix_len(buf: bytearray) -> int:
    """Length of the longest tail of ``buf`` that could begin a split ``OggS``."""
    for size in (3, 2, 1):
        if buf.endswith(CAPTURE_PATTERN[:size]):
            return size
    return 0


class OggPageScanner:
    """Splits a byte stream into verified Ogg pages, across any feed boundaries."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._base = 0  # absolute offset of self._buf[0]
        self.skipped_bytes = 0  # garbage seen so far, for diagnostics

    @property
    def consumed(self) -> int:
        """Absolute offset up to which every byte was returned as a page or skipped."""
        return self._base

    def feed(self, data: bytes) -> list[OggPage]:
        """Append ``data``; return the pages it completed, in stream order."""
        self._buf += data
        pages: list[OggPage] = []
        while (page := self._next_page()) is not None:
            pages.append(page)
        return pages

    def _next_page(self) -> OggPage | None:
        while True:
            start = self._buf.find(CAPTURE_PATTERN)
            if start < 0:
                self._skip(len(self._buf) - _magic_prefix_len(self._buf))
                return None
            self._skip(start)
            length = page_length(self._buf)
            if length is None or len(self._buf) < length:
                if not self._complete_page_after(1):
                    return None  # incomplete: wait for more data
                length = 0  # a verified page lies inside the claimed span: a false start
            page = parse_page(bytes(self._buf[:length]), self._base) if length else None
            if page is None:
                self._skip(1)  # a false "OggS" or a corrupt page: resync after it
                continue
            self._drop(length)
            return page

    def _complete_page_after(self, start: int) -> bool:
        """True if a verified page lies in the buffer at or after ``start``.

        Then an incomplete candidate before it is a false start: a real page does not
        hold another valid page, so resync now instead of holding data back until the
        bogus length is reached (up to 64 KiB of listener-visible latency).
        """
        at = self._buf.find(CAPTURE_PATTERN, start)
        while at >= 0:
            length = page_length(self._buf[at : at + HEADER_SIZE + 255])
            if length and at + length <= len(self._buf):
                if parse_page(bytes(self._buf[at : at + length]), 0) is not None:
                    return True
            at = self._buf.find(CAPTURE_PATTERN, at + 1)
        return False

    def _skip(self, count: int) -> None:
        self.skipped_bytes += count
        self._drop(count)

    def _drop(self, count: int) -> None:
        del self._buf[:count]
        self._base += count


@dataclass(frozen=True, slots=True)
class PageRole:
    """What ``OggHeaderTracker.observe`` learnt from a page."""

    is_header: bool
    header_set: bytes | None  # on the first data page of a link: its header set (b"": skipped)
    skipped: str | None = None  # why this link's header set is skipped (said once per link)


_HEADER = PageRole(is_header=True, header_set=None)
_DATA = PageRole(is_header=False, header_set=None)


class OggHeaderTracker:
    """Tells header pages from data pages and assembles each link's header set."""

    def __init__(self) -> None:
        self._start_link()

    def observe(self, page: OggPage) -> PageRole:
        """Classify ``page`` (pages must be observed in stream order)."""
        if page.bos and (self._link_has_data or (self._header_pages and not self._live)):
            self._start_link()
        role = self._classify(page)
        if page.eos:
            self._live.discard(page.serial)
        return role

    def _start_link(self) -> None:
        self._pages: list[bytes] = []  # header pages of the current link
        self._size = 0
        self._header_pages = 0  # header pages seen in this link, kept or not
        self._streams: dict[int, int] = {}  # serial -> its header pages, streams of this link
        self._in_headers: set[int] = set()  # serials still in their header pages
        self._live: set[int] = set()  # serials of the link without an EOS yet
        self._link_has_data = False
        self._pending = False  # a header set to hand out at the next data page
        self._skipped = False

    def _classify(self, page: OggPage) -> PageRole:
        if page.bos:
            return self._header_page(page)
        if page.serial in self._in_headers:
            if page.granule in (0, _NO_GRANULE):
                return self._header_page(page)
            self._in_headers.discard(page.serial)
        return self._data_page()

    def _header_page(self, page: OggPage) -> PageRole:
        self._header_pages += 1
        reason = self._admit(page)
        if self._skipped:
            return _HEADER
        if reason is not None:
            self._pages, self._size = [], 0
            self._skipped = self._pending = True
            return PageRole(is_header=True, header_set=None, skipped=reason)
        self._pages.append(page.data)
        self._size += page.length
        self._pending = True
        return _HEADER

    def _admit(self, page: OggPage) -> str | None:
        """Count ``page`` against the bounds; return why the link's set must be skipped."""
        if page.bos and page.serial not in self._streams:
            if len(self._streams) >= MAX_LINK_STREAMS:
                return f"more than {MAX_LINK_STREAMS} logical streams in one link"
            self._streams[page.serial] = 0
            self._in_headers.add(page.serial)
            self._live.add(page.serial)
        self._streams[page.serial] += 1
        if self._streams[page.serial] > MAX_HEADER_PAGES:
            return f"more than {MAX_HEADER_PAGES} header pages in one logical stream"
        if self._size + page.length > MAX_HEADER_SET:
            return f"header pages over {MAX_HEADER_SET} bytes"
        return None

    def _data_page(self) -> PageRole:
        self._link_has_data = True
        if not self._pending:
            return _DATA
        self._pending = False
        return PageRole(is_header=False, header_set=b"".join(self._pages))
