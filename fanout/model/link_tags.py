"""What status pages say about one link of an Ogg stream, from its header set. Pure.

Theory of operation. Icecast 2.4.4 reads each new link's header pages (format_ogg.c and
its codec plugins) and files, per mount:

- ``title`` and ``artist``: the first TITLE and ARTIST comments (keys compared without
  case), each absent when the link has none. Icecast does so for Vorbis only; we read
  them from every codec's comments (``comments.link_comments``: Opus, FLAC, Theora too),
  since a now-playing line is what the status page is for.
- ``subtype``: the codec names of the link's streams, "/"-separated, the stream that
  began last first (Icecast pushes each new codec on the front of its list): "Vorbis",
  "Opus", "Vorbis/Theora".
- For Vorbis, what its identification header says: ``audio_bitrate`` (the nominal
  bitrate, bit/s), ``audio_channels``, ``audio_samplerate`` and ``ice-bitrate`` (the
  nominal bitrate in kbit/s, truncated as C's integer division does). Opus, FLAC and the
  others add nothing (2.4.4 files nothing for them).

Everything is text, as in Icecast's stats tree. Malformed packets are skipped, never raise.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from fanout.model.comments import header_packets, link_comments

# First bytes of each codec's identification packet -> the name Icecast files in `subtype`.
CODEC_NAMES = (
    (b"\x01vorbis", "Vorbis"), (b"OpusHead", "Opus"), (b"\x7fFLAC", "FLAC"),
    (b"Speex   ", "Speex"), (b"\x80theora", "Theora"), (b"\x80kate\x00\x00\x00", "Kate"),
    (b"fishead\x00", "Skeleton"), (b"OggMIDI\x00", "MIDI"),
)
# Vorbis identification header: "\x01vorbis", version u32, channels u8, rate u32, then
# maximum, nominal and minimum bitrates (i32 each), little-endian.
_VORBIS_ID = struct.Struct("<7sIBIiii")

CodecStats = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class LinkTags:
    """One link's title, artist ("" when it has none) and codec stats (key, text)."""

    title: str = ""
    artist: str = ""
    codec: CodecStats = ()


def link_tags(header_set: bytes) -> LinkTags:
    """The tags of the link whose header pages are ``header_set``."""
    comments = link_comments(header_set)
    return LinkTags(_first(comments, "TITLE"), _first(comments, "ARTIST"),
                    codec_stats(header_set))


def codec_stats(header_set: bytes) -> CodecStats:
    """``subtype`` and, for Vorbis, the ``audio_*`` and ``ice-bitrate`` stats, by key."""
    names: list[str] = []
    values: dict[str, str] = {}
    seen: set[int] = set()
    for serial, packet in header_packets(header_set):
        if serial in seen:
            continue  # only a stream's first packet identifies it
        seen.add(serial)
        name = codec_name(packet)
        if name is not None:
            names.insert(0, name)
        if name == "Vorbis":
            values.update(vorbis_stats(packet))
    if names:
        values["subtype"] = "/".join(names)
    return tuple(sorted(values.items()))


def codec_name(packet: bytes) -> str | None:
    """The codec an identification packet starts, as Icecast names it (None: unknown)."""
    return next((name for prefix, name in CODEC_NAMES if packet.startswith(prefix)), None)


def vorbis_stats(packet: bytes) -> dict[str, str]:
    """What Icecast files from a Vorbis identification header ({} if it is cut short)."""
    if len(packet) < _VORBIS_ID.size:
        return {}
    _, _, channels, rate, _, nominal, _ = _VORBIS_ID.unpack_from(packet)
    return {"audio_bitrate": str(nominal), "audio_channels": str(channels),
            "audio_samplerate": str(rate), "ice-bitrate": str(_c_divide(nominal, 1000))}


def _c_divide(value: int, by: int) -> int:
    """Integer division truncated toward zero, as C's (Python's // floors)."""
    quotient = abs(value) // by
    return quotient if value >= 0 else -quotient


def _first(comments: list[tuple[str, str]], key: str) -> str:
    return next((value for name, value in comments if name == key), "")
