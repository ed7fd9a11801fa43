"""What format an intro file is in, whether it suits a mount (``<mount><intro>``), and
how it goes to a listener that asked for ICY metadata.

2.4.4 sends the intro's bytes to each new listener before the stream whatever they are
("make sure the format of the file specified matches the streaming format", its docs
say); a player given MP3 then Ogg stops at the switch. We look at the file instead: an
Ogg file starts with a valid page, an MP3 or AAC (ADTS) file (after an ID3v2 tag) with
frames that chain. A mount whose Content-Type names no format we know (``generic``)
takes any intro, as 2.4.4 does.
"""

from __future__ import annotations

from fanout.model.ingest import GENERIC, OGG, format_for_content_type
from fanout.model.mpeg import ADTS, MPEG, MpegFrameTracker
from fanout.model.ogg import page_length, parse_page

# Bytes looked at: enough for a large ID3v2 tag's neighbourhood and a few frames.
SNIFF_BYTES = 65536
# Chained frames that make MP3 or ADTS certain (a lone valid-looking header is common).
MIN_FRAMES = 3
# Bytes after the ID3v2 tag (padding, junk) within which the first frame must start.
MAX_LEADING_JUNK = 4096
_ID3_HEADER = 10
_ID3_FOOTER_FLAG = 0x10


def detect_format(data: bytes) -> str:
    """The ingest format of a file's content: OGG, MPEG, ADTS or GENERIC (none of those)."""
    head = data[:SNIFF_BYTES]
    if _starts_with_ogg_page(head):
        return OGG
    start = id3v2_length(head)
    for kind in (MPEG, ADTS):
        frames = MpegFrameTracker(kind).feed(head[start:])
        if len(frames) >= MIN_FRAMES and frames[0] <= MAX_LEADING_JUNK:
            return kind
    return GENERIC


def _starts_with_ogg_page(data: bytes) -> bool:
    length = page_length(data)  # None: too short to tell; 0: no Ogg page header
    if not length or length > len(data):
        return False
    return parse_page(data[:length], 0) is not None


def id3v2_length(data: bytes) -> int:
    """Bytes of the ID3v2 tag at the start of ``data`` (0: none)."""
    if len(data) < _ID3_HEADER or data[:3] != b"ID3" or any(b & 0x80 for b in data[6:10]):
        return 0
    size = (data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9]  # "syncsafe" integer
    footer = _ID3_HEADER if data[5] & _ID3_FOOTER_FLAG else 0
    return _ID3_HEADER + size + footer


def intro_mismatch(data: bytes, content_type: str | None) -> str | None:
    """Why ``data`` cannot introduce a mount of ``content_type``, or None if it can."""
    wanted = format_for_content_type(content_type)
    if wanted == GENERIC:
        return None
    found = detect_format(data)
    if found == wanted:
        return None
    described = "in no format fanout recognises" if found == GENERIC else f"{found}"
    return f"the intro is {described}, the mount's {content_type} is {wanted}"


def interleave_icy(intro: bytes, metaint: int, first_block: bytes) -> tuple[bytes, int]:
    """``intro`` as a listener with ICY interval ``metaint`` receives it, and the audio
    bytes it is still owed before its next block once the intro is sent.

    2.4.4 counts intro bytes as audio (§5.3): a block follows every ``metaint`` bytes of
    intro, the first one ``first_block`` (the mount's current metadata: the first block a
    listener gets is always the full one), the later ones empty ("\0"). A block due right
    at the end of the intro is left to the stream (the owed count is then 0), so the
    stream's block follows as usual.
    """
    if not intro or metaint <= 0:
        return intro, metaint
    blocks = (len(intro) - 1) // metaint  # only those with intro audio after them
    pieces: list[bytes] = []
    for index in range(blocks):
        pieces += [intro[index * metaint:(index + 1) * metaint], first_block if index == 0 else b"\0"]
    pieces.append(intro[blocks * metaint:])
    return b"".join(pieces), metaint - (len(intro) - blocks * metaint)
