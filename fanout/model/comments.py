"""The comments (TITLE, ARTIST...) of a chained Ogg stream's link, from its header set.

Theory of operation. A header set (what ``OggHeaderTracker`` hands out, at most
``MAX_HEADER_SET`` bytes) is a link's header pages. Their packets are put back together
per logical stream (a lacing value of 255 continues a packet, also onto the stream's
next page) and each stream's comment packet is read: Vorbis ``\\x03vorbis``, Opus
``OpusTags``, Theora ``\\x81theora``, or, in a stream that began with FLAC's Ogg mapping
header, the VORBIS_COMMENT metadata block. All four lay the comments out alike: a vendor
string, then a count of ``KEY=value`` strings, each length a little-endian u32. Keys are
upper-cased; text that is not UTF-8 is read as Latin-1. Malformed packets are skipped.
"""

from __future__ import annotations

from fanout.model.ogg import OggPageScanner

_COMMENT_PACKETS = (b"\x03vorbis", b"OpusTags", b"\x81theora")
_FLAC_MAPPING = b"\x7fFLAC"  # first packet of a FLAC-in-Ogg stream
_FLAC_VORBIS_COMMENT = 4  # metadata block type
_FLAC_BLOCK_HEADER = 4  # type byte (top bit: last block) and a 24-bit length
_U32 = 4


def link_comments(header_set: bytes) -> list[tuple[str, str]]:
    """The (KEY, value) comments of every stream of the link, in stream order."""
    comments: list[tuple[str, str]] = []
    is_flac: dict[int, bool] = {}  # serial -> its codec, told by its first packet
    for serial, packet in header_packets(header_set):
        if serial not in is_flac:  # an identification header, never the comments
            is_flac[serial] = packet.startswith(_FLAC_MAPPING)
            continue
        body = comment_body(packet, flac=is_flac[serial])
        if body is not None:
            comments += parse_comments(body)
    return comments


def header_packets(header_set: bytes) -> list[tuple[int, bytes]]:
    """(serial, packet) of every packet completed in the header pages, in order."""
    partial: dict[int, bytearray] = {}
    packets: list[tuple[int, bytes]] = []
    for page in OggPageScanner().feed(header_set):
        buf = partial.setdefault(page.serial, bytearray())
        if not page.continued:
            buf.clear()  # a packet left unfinished on the stream's previous page
        nsegs = page.data[26]
        pos = 27 + nsegs
        for lace in page.data[27:pos]:
            buf += page.data[pos:pos + lace]
            pos += lace
            if lace < 255:
                packets.append((page.serial, bytes(buf)))
                buf.clear()
    return packets


def comment_body(packet: bytes, *, flac: bool) -> bytes | None:
    """The comment structure inside ``packet``, or None if it is no comment packet."""
    if flac:
        is_comments = bool(packet) and packet[0] & 0x7F == _FLAC_VORBIS_COMMENT
        return packet[_FLAC_BLOCK_HEADER:] if is_comments else None
    for prefix in _COMMENT_PACKETS:
        if packet.startswith(prefix):
            return packet[len(prefix):]
    return None


def parse_comments(body: bytes) -> list[tuple[str, str]]:
    """The ``KEY=value`` strings after the vendor string (as many as fit the body)."""
    pos = _U32 + _u32(body, 0)
    count = _u32(body, pos)
    pos += _U32
    comments: list[tuple[str, str]] = []
    while len(comments) < count and pos + _U32 <= len(body):
        size = _u32(body, pos)
        entry = body[pos + _U32:pos + _U32 + size]
        pos += _U32 + size
        key, sep, value = entry.partition(b"=")
        if sep and len(entry) == size:
            comments.append((_text(key).upper(), _text(value)))
    return comments


def _u32(data: bytes, at: int) -> int:
    """The little-endian u32 at ``at``; 0 past the end (a truncated structure ends there)."""
    return int.from_bytes(data[at:at + _U32], "little") if at + _U32 <= len(data) else 0


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")
