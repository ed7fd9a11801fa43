"""The one ingest path: upstream or source bytes in, ring appends out.

Theory of operation. Each ``feed`` first removes inline ICY metadata (relays whose
upstream sent ``icy-metaint``), then looks at the audio according to the format:

* ``ogg``: pages are scanned and verified. Every chunk ends on a page boundary: the
  bytes of an incomplete trailing page are held back until the page completes (so a
  sync point is always reported in the chunk holding its page start). The hold-back
  is bounded: the scanner decides within ``MAX_PAGE_SIZE`` bytes whether a candidate
  page is real, and bytes that are not part of a valid page are passed on as they
  are (listeners' decoders skip them as the scanner did). Header pages go into
  ``data`` too (listeners already playing need a chained stream's new headers) and
  are collected; a link's complete header set is reported once, in the chunk with
  its first data page, with that page's offset (a listener given this set must start
  there or later). Every data page start is a sync point. A link whose header pages
  break a bound (``fanout.model.ogg``) gets an empty set and a reason, once.
* ``mpeg`` / ``adts``: frames are tracked; a frame start becomes a sync point at most
  once per ``min_sync_gap`` bytes. No hold-back: a frame whose start lies in an
  earlier chunk (its header was split across feeds, or the tracker only just locked)
  is simply not a sync point. If ``UNLOCKED_FALLBACK`` bytes pass without any frame,
  chunk starts are used as for ``generic``.
* ``generic``: the start of each non-empty chunk is a sync point, at most once per
  ``min_sync_gap`` bytes (chunk boundaries, as Icecast does).

All offsets are counted in emitted audio bytes, so they match the ring's sequence
numbers once the caller adds the ring position where this ingest started.
"""

from __future__ import annotations

from dataclasses import dataclass

from fanout.model.mpeg import ADTS, MPEG, MpegFrameTracker
from fanout.model.ogg import OggHeaderTracker, OggPage, OggPageScanner
from fanout.protocol.icy import IcyStripper

OGG = "ogg"
GENERIC = "generic"
FORMATS = (OGG, MPEG, ADTS, GENERIC)
DEFAULT_MIN_SYNC_GAP = 4096  # bytes; keeps the ring's 256-entry sync table spanning the burst
# Bytes of MPEG/ADTS-labelled audio without any frame after which chunk starts serve as
# sync points instead: the label is wrong (e.g. AAC sent as audio/mpeg), and Icecast bursts
# from chunk boundaries whatever the content, so listeners must still get a burst.
UNLOCKED_FALLBACK = 65536

_CONTENT_TYPES = {
    OGG: ("application/ogg", "application/x-ogg", "audio/ogg", "audio/x-ogg", "video/ogg", "audio/opus"),
    MPEG: ("audio/mpeg", "audio/mp3", "audio/mpeg3", "audio/x-mpeg", "audio/x-mp3", "audio/x-mpeg-3", "audio/mpg"),
    ADTS: ("audio/aac", "audio/aacp", "audio/x-aac", "audio/x-aacp"),
}
_FORMAT_OF = {ctype: fmt for fmt, ctypes in _CONTENT_TYPES.items() for ctype in ctypes}


@dataclass(frozen=True, slots=True)
class LinkHeaders:
    """A chained Ogg stream's link, as of its first data page."""

    offset: int  # where its first data page starts, WITHIN the chunk's data
    pages: bytes  # its header set (concatenated header pages; b"" if skipped)


@dataclass(frozen=True, slots=True)
class IngestChunk:
    """What one ``Ingest.feed`` produced."""

    data: bytes  # audio bytes to append to the ring (ICY blocks removed)
    sync_offsets: tuple[int, ...]  # offsets WITHIN data where a listener may start (ascending)
    headers: tuple[LinkHeaders, ...]  # Ogg links whose first data page is in data, in order
    titles: tuple[bytes, ...]  # raw ICY metadata payloads seen from upstream (relays only)
    skipped: tuple[str, ...] = ()  # why an Ogg link's header set was skipped (bounds)


def format_for_content_type(content_type: str | None) -> str:
    """Return the ingest format for a Content-Type (parameters ignored), else "generic"."""
    if not content_type:
        return GENERIC
    media_type = content_type.split(";", 1)[0].strip().lower()
    return _FORMAT_OF.get(media_type, GENERIC)


class _OggPages:
    """Ogg half of the ingest: page-aligned emission, sync points, header sets."""

    def __init__(self) -> None:
        self._scanner = OggPageScanner()
        self._headers = OggHeaderTracker()
        self._held = bytearray()  # fed bytes not yet emitted (an incomplete page)

    def feed(self, audio: bytes, start: int) -> tuple[bytes, list[int], list[LinkHeaders], list[str]]:
        """Return (data, sync offsets, links begun, skip reasons); ``start`` = first offset."""
        self._held += audio
        pages = self._scanner.feed(audio)
        ready = self._scanner.consumed - start
        data = bytes(self._held[:ready])
        del self._held[:ready]
        return (data, *self._classify(pages, start))

    @property
    def held(self) -> int:
        """Bytes fed but not yet emitted (an incomplete page)."""
        return len(self._held)

    def _classify(self, pages: list[OggPage], start: int) -> tuple[list[int], list[LinkHeaders], list[str]]:
        syncs: list[int] = []
        links: list[LinkHeaders] = []
        skipped: list[str] = []
        for page in pages:
            role = self._headers.observe(page)
            if role.skipped is not None:
                skipped.append(role.skipped)
            if role.header_set is not None:
                links.append(LinkHeaders(page.offset - start, role.header_set))
            if not role.is_header:
                syncs.append(page.offset - start)
        return syncs, links, skipped


class Ingest:
    """Turns upstream/source bytes into ring appends.

    ``min_sync_gap``: at most one MPEG/ADTS sync point per this many bytes (Ogg: every
    data page start). ``generic``: a sync point at the start of each feed, at most
    once per ``min_sync_gap`` bytes. ``icy_metaint``: the upstream's ``icy-metaint``
    (0: no inline metadata). Raises ValueError for an unknown format.
    """

    def __init__(self, fmt: str, *, min_sync_gap: int = DEFAULT_MIN_SYNC_GAP, icy_metaint: int = 0) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown stream format {fmt!r}, expected one of {FORMATS}")
        self._min_sync_gap = min_sync_gap
        self._icy = IcyStripper(icy_metaint)
        self._ogg = _OggPages() if fmt == OGG else None
        self._frames = MpegFrameTracker(fmt) if fmt in (MPEG, ADTS) else None
        self._emitted = 0  # audio bytes emitted so far
        self._last_sync: int | None = None  # absolute offset of the last MPEG/generic sync

    @property
    def held(self) -> int:
        """Audio bytes fed but not yet emitted (Ogg: an incomplete page)."""
        return self._ogg.held if self._ogg is not None else 0

    def feed(self, data: bytes) -> IngestChunk:
        """Consume ``data``; return the audio to append and what is known about it."""
        audio, titles = self._icy.feed(data)
        start = self._emitted
        links: list[LinkHeaders] = []
        skipped: list[str] = []
        if self._ogg is not None:
            audio, syncs, links, skipped = self._ogg.feed(audio, start)
        else:
            syncs = [offset - start for offset in self._gated(self._sync_candidates(audio, start))]
        self._emitted += len(audio)
        return IngestChunk(audio, tuple(syncs), tuple(links), tuple(titles), tuple(skipped))

    def _sync_candidates(self, audio: bytes, start: int) -> list[int]:
        """Return absolute offsets in ``audio`` where a listener could start."""
        if self._frames is None:
            return [start] if audio else []
        # A frame starting in an earlier chunk cannot be a sync point of this one.
        frames = [offset for offset in self._frames.feed(audio) if offset >= start]
        if frames or not audio:
            return frames
        since_sync = start - (self._last_sync if self._last_sync is not None else 0)
        return [start] if since_sync >= UNLOCKED_FALLBACK else []

    def _gated(self, offsets: list[int]) -> list[int]:
        """Keep the absolute ``offsets`` at least ``min_sync_gap`` after the last kept."""
        kept: list[int] = []
        for offset in offsets:
            if self._last_sync is None or offset - self._last_sync >= self._min_sync_gap:
                kept.append(offset)
                self._last_sync = offset
        return kept
