"""What status pages say of an Ogg link (fanout.model.link_tags), as Icecast 2.4.4 files it:
the header sets come from files ffmpeg made, or are built page by page where a case is
one no encoder makes."""
from __future__ import annotations

import random
import struct

from fanout.model.link_tags import LinkTags, codec_stats, link_tags
from tests.unit.test_ogg import (
    comment_list, encode, header_set_of, needs_ffmpeg, ogg_page, opus_header_set,
)


def vorbis_id(channels: int, rate: int, nominal: int) -> bytes:
    return struct.pack("<7sIBIiii", b"\x01vorbis", 0, channels, rate, 0, nominal, 0) + b"\xb8\x01"


@needs_ffmpeg
def test_a_vorbis_link_gives_icecasts_audio_stats_subtype_title_and_artist():
    ogg = encode("-metadata", "title=Tone", "-metadata", "artist=Sine Band", "-ac", "2",
                 "-ar", "44100", "-c:a", "libvorbis", "-b:a", "128k", "-f", "ogg", seconds=1)
    assert link_tags(header_set_of(ogg)) == LinkTags("Tone", "Sine Band", (
        ("audio_bitrate", "128000"), ("audio_channels", "2"), ("audio_samplerate", "44100"),
        ("ice-bitrate", "128"), ("subtype", "Vorbis")))


@needs_ffmpeg
def test_an_opus_link_gives_its_subtype_and_its_comments():
    ogg = encode("-metadata", "title=Tone", "-c:a", "libopus", "-f", "ogg", seconds=1)
    assert link_tags(header_set_of(ogg)) == LinkTags("Tone", "", (("subtype", "Opus"),))


@needs_ffmpeg
def test_a_flac_link_gives_its_subtype():
    assert codec_stats(header_set_of(encode("-c:a", "flac", "-f", "ogg", seconds=1))) == (
        ("subtype", "FLAC"),)


def test_no_title_or_artist_comment_leaves_them_empty():
    assert link_tags(opus_header_set(comment_list(b"v", b"GENRE=x"))) == LinkTags(
        "", "", (("subtype", "Opus"),))


def test_the_first_title_and_artist_comment_count():
    tags = comment_list(b"v", b"title=one", b"TITLE=two", b"Artist=a", b"ARTIST=b")
    assert (link_tags(opus_header_set(tags)).title, link_tags(opus_header_set(tags)).artist) == (
        "one", "a")


def test_two_streams_are_named_the_last_begun_first_as_icecast_lists_its_codecs():
    header_set = (ogg_page(1, 0, b"\x80theora" + bytes(34), flags=2)
                  + ogg_page(2, 0, vorbis_id(1, 22050, 64000), flags=2))
    assert dict(codec_stats(header_set))["subtype"] == "Vorbis/Theora"


def test_a_nominal_bitrate_below_zero_is_divided_as_c_does():
    stats = dict(codec_stats(ogg_page(3, 0, vorbis_id(1, 8000, -1), flags=2)))
    assert (stats["audio_bitrate"], stats["ice-bitrate"]) == ("-1", "0")


def test_an_unknown_codec_and_a_cut_vorbis_header_add_nothing():
    assert codec_stats(ogg_page(4, 0, b"\x00unknown", flags=2)) == ()
    cut = ogg_page(5, 0, vorbis_id(2, 44100, 128000)[:20], flags=2)
    assert codec_stats(cut) == (("subtype", "Vorbis"),)


def test_mangled_header_sets_never_raise():
    rng = random.Random(7)
    header_set = ogg_page(5, 0, vorbis_id(2, 44100, 128000), flags=2) + ogg_page(
        5, 1, b"\x03vorbis" + comment_list(b"v", b"TITLE=a"))
    for _ in range(1000):
        mangled = bytearray(header_set)
        for _ in range(rng.randint(1, 6)):
            mangled[rng.randrange(len(mangled))] = rng.randrange(256)
        assert isinstance(link_tags(bytes(mangled[:rng.randint(0, len(mangled))])), LinkTags)
