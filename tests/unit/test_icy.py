"""ICY metadata blocks: PROTOCOL.md §3.4, §5.3 and WIRE.md §5."""

from __future__ import annotations

import random

import pytest

from fanout.protocol.icy import (
    EMPTY_BLOCK,
    MAX_META_TEXT,
    IcyStripper,
    block_from_payload,
    encode_block,
    parse_block_text,
    shown_title,
    stream_title_text,
)
from tests.support.splits import random_pieces



def icy_stream(rng: random.Random, metaint: int, runs: int) -> tuple[bytes, bytes, list[bytes]]:
    """Return (wire body, audio, payloads of the non-empty blocks) for a synthetic upstream."""
    audio = rng.randbytes(metaint * runs + rng.randint(0, metaint - 1))
    wire = bytearray()
    payloads = []
    for run in range(runs):
        wire += audio[run * metaint : (run + 1) * metaint]
        if rng.random() < 0.5:
            wire += b"\0"
        else:
            block = encode_block(stream_title_text(song=b"song %d '%s'" % (run, b"x" * rng.randint(0, 60))))
            wire += block
            payloads.append(block[1:])
    wire += audio[runs * metaint :]
    return bytes(wire), audio, payloads


def strip_all(stripper: IcyStripper, pieces: list[bytes]) -> tuple[bytes, list[bytes]]:
    audio = bytearray()
    blocks: list[bytes] = []
    for piece in pieces:
        chunk_audio, chunk_blocks = stripper.feed(piece)
        audio += chunk_audio
        blocks += chunk_blocks
    return bytes(audio), blocks


def test_empty_block_is_icecasts_initial_metadata() -> None:
    assert EMPTY_BLOCK == b"\x01StreamTitle='';\x00"


def test_16_byte_text_takes_32_bytes() -> None:
    block = encode_block(b"x" * 16)
    assert block[0] == 2
    assert len(block) == 1 + 32
    assert block[17:] == b"\0" * 16


def test_300_char_title_gives_length_byte_21() -> None:
    # WIRE.md §5 saw L=21 (336 bytes); with the lab's artist that is a 328-byte text.
    block = encode_block(stream_title_text(artist=b"Lab Artist", title=b"t" * 300))
    assert block[0] == 21
    assert len(block) == 1 + 336


def test_length_byte_is_text_length_div_16_plus_1() -> None:
    assert [encode_block(b"a" * n)[0] for n in (0, 15, 16, 31, 32, 315)] == [1, 1, 2, 2, 3, 20]


def test_block_pads_text_with_nul_to_16_bytes() -> None:
    assert encode_block(b"StreamTitle='ab';") == b"\x02StreamTitle='ab';" + b"\0" * 15


def test_longest_text_uses_255_units() -> None:
    block = encode_block(b"a" * MAX_META_TEXT)
    assert block[0] == 255
    assert block.endswith(b"a\0")


def test_text_over_max_raises_value_error() -> None:
    with pytest.raises(ValueError):
        encode_block(b"a" * (MAX_META_TEXT + 1))


def test_song_is_the_title() -> None:
    assert stream_title_text(song=b"Song 2") == b"StreamTitle='Song 2';"


def test_artist_and_title_are_joined_with_dash() -> None:
    assert stream_title_text(artist=b"Lab Artist", title=b"Song 2") == b"StreamTitle='Lab Artist - Song 2';"


def test_title_without_artist_stands_alone() -> None:
    assert stream_title_text(title=b"Song 2") == b"StreamTitle='Song 2';"


def test_no_title_gives_empty_stream_title() -> None:
    assert stream_title_text() == b"StreamTitle='';"


def test_stream_url_follows_title() -> None:
    assert stream_title_text(song=b"a", url=b"http://x/") == b"StreamTitle='a';StreamUrl='http://x/';"


def test_apostrophes_and_utf8_are_inserted_raw() -> None:
    title = "O'Brien & Sons - \"Quoted\"; semi é".encode()
    assert stream_title_text(song=title) == b"StreamTitle='" + title + b"';"


def test_parse_block_text_reads_title_and_url() -> None:
    assert parse_block_text(b"StreamTitle='a';StreamUrl='b';\0\0") == {"StreamTitle": b"a", "StreamUrl": b"b"}


def test_parse_block_text_keeps_apostrophes_inside_values() -> None:
    payload = encode_block(b"StreamTitle='O'Brien & Sons - \"Quoted\"; semi';")[1:]
    assert parse_block_text(payload) == {"StreamTitle": b"O'Brien & Sons - \"Quoted\"; semi"}


def test_parse_block_text_keeps_unknown_keys() -> None:
    assert parse_block_text(b"StreamTitle='';adw_ad='true';\0") == {"StreamTitle": b"", "adw_ad": b"true"}


def test_parse_block_text_reads_exactly_full_block_truncated_by_icecast() -> None:
    # WIRE.md §5: 2.4.4 drops the last byte of a 48-byte upstream text with no NUL.
    payload = b"StreamTitle='Fake Artist - Song 1';StreamUrl=''\0"
    assert parse_block_text(payload) == {"StreamTitle": b"Fake Artist - Song 1", "StreamUrl": b""}


def test_parse_block_text_of_padding_only_is_empty() -> None:
    assert parse_block_text(b"\0" * 16) == {}


def test_block_from_payload_restores_the_wire_block() -> None:
    block = encode_block(stream_title_text(song=b"x" * 40))
    assert block_from_payload(block[1:]) == block


def test_block_from_payload_rejects_partial_units() -> None:
    with pytest.raises(ValueError):
        block_from_payload(b"StreamTitle='';")


def test_stripper_with_metaint_zero_passes_everything_through() -> None:
    assert IcyStripper(0).feed(b"\x01abc") == (b"\x01abc", [])


def test_stripper_counts_metaint_from_first_body_byte() -> None:
    block = encode_block(b"StreamTitle='t';")
    audio, blocks = IcyStripper(4).feed(b"abcd" + block + b"efgh\0ij")
    assert audio == b"abcdefghij"
    assert blocks == [block[1:]]


def test_stripper_reports_no_block_for_unchanged_marker() -> None:
    assert IcyStripper(2).feed(b"ab\0cd\0ef") == (b"abcdef", [])


@pytest.mark.parametrize("seed", range(8))
def test_stripper_recovers_audio_and_blocks_under_random_splits(seed: int) -> None:
    rng = random.Random(seed)
    metaint = rng.randint(1, 3000)
    wire, audio, payloads = icy_stream(rng, metaint, runs=40)
    assert strip_all(IcyStripper(metaint), random_pieces(wire, rng, max_piece=2 * metaint + 100)) == (audio, payloads)


def test_stripper_recovers_audio_and_blocks_fed_byte_by_byte() -> None:
    rng = random.Random(99)
    wire, audio, payloads = icy_stream(rng, 37, runs=30)
    assert strip_all(IcyStripper(37), [wire[i : i + 1] for i in range(len(wire))]) == (audio, payloads)


def test_stripper_reports_block_in_the_feed_that_completes_it() -> None:
    block = encode_block(b"StreamTitle='split';")
    stripper = IcyStripper(3)
    assert stripper.feed(b"abc" + block[:1]) == (b"abc", [])
    assert stripper.feed(block[1:10]) == (b"", [])
    assert stripper.feed(block[10:] + b"d") == (b"d", [block[1:]])


def test_max_meta_text_is_255_units_less_the_closing_nul() -> None:
    assert MAX_META_TEXT == 255 * 16 - 1
    assert len(encode_block(b"x" * MAX_META_TEXT)) == 1 + 255 * 16


def test_shown_title_is_what_stream_title_text_puts_between_the_quotes() -> None:
    for fields in ({"song": b"s"}, {"artist": b"a", "title": b"t"}, {"title": b"t"}, {}):
        assert stream_title_text(**fields) == b"StreamTitle='" + shown_title(**fields) + b"';"


def test_control_characters_in_a_title_go_into_the_block_as_received() -> None:
    assert stream_title_text(song=b"a\r\nb\x01") == b"StreamTitle='a\r\nb\x01';"
