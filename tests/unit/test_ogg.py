"""Ogg page scanning and header pages (RFC 3533), on files made by ffmpeg."""

from __future__ import annotations

import random
import shutil
import struct
import tracemalloc

import pytest

from fanout.model.comments import link_comments
from fanout.model.ogg import (
    MAX_HEADER_PAGES, MAX_HEADER_SET, MAX_LINK_STREAMS, OggHeaderTracker, OggPage, OggPageScanner,
    ogg_crc,
)
from tests.support.splits import encode_tone, random_pieces


def encode(*codec_args: str, seconds: int = 6, freq: int = 440) -> bytes:
    return encode_tone(*codec_args, seconds=seconds, freq=freq)


needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


@pytest.fixture(scope="module")
def vorbis() -> bytes:
    return encode("-c:a", "libvorbis", "-f", "ogg")


@pytest.fixture(scope="module")
def opus() -> bytes:
    return encode("-c:a", "libopus", "-f", "ogg")


@pytest.fixture(params=["vorbis", "opus"])
def ogg_file(request: pytest.FixtureRequest) -> bytes:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    data: bytes = request.getfixturevalue(request.param)
    return data


def ogg_page(serial: int, seqno: int, body: bytes, *, flags: int = 0, granule: int = 0) -> bytes:
    """One valid Ogg page (``body`` shorter than 255*255 bytes); flags 2 = BOS, 4 = EOS."""
    lacing = bytes([255] * (len(body) // 255) + [len(body) % 255])
    head = struct.pack("<4sBBqIIIB", b"OggS", 0, flags, granule, serial, seqno, 0, len(lacing))
    page = bytearray(head + lacing + body)
    page[22:26] = ogg_crc(bytes(page)).to_bytes(4, "little")
    return bytes(page)


def scan(pieces: list[bytes]) -> list[OggPage]:
    scanner = OggPageScanner()
    return [page for piece in pieces for page in scanner.feed(piece)]


def header_sets(pages: list[OggPage]) -> tuple[list[bool], list[bytes]]:
    tracker = OggHeaderTracker()
    roles = [tracker.observe(page) for page in pages]
    return [role.is_header for role in roles], [role.header_set for role in roles if role.header_set is not None]


def packets_on(pages: list[OggPage]) -> int:
    """Packets ending on these pages: lacing values below 255 end a packet."""
    return sum(1 for page in pages for lace in page.data[27 : 27 + page.data[26]] if lace < 255)


def _reference_table() -> list[int]:
    table = []
    for byte in range(256):
        reg = byte << 24
        for _ in range(8):
            reg = ((reg << 1) ^ 0x04C11DB7 if reg & 0x80000000 else reg << 1) & 0xFFFFFFFF
        table.append(reg)
    return table


_TABLE = _reference_table()


def reference_crc(data: bytes) -> int:
    """The textbook table-driven Ogg CRC, to check the zlib-based one against."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _TABLE[(crc >> 24) ^ byte]
    return crc


def test_crc_matches_table_driven_reference() -> None:
    rng = random.Random(1)
    for size in (0, 1, 3, 27, 4096):
        data = rng.randbytes(size)
        assert ogg_crc(data) == reference_crc(data)


@needs_ffmpeg
def test_whole_file_is_pages_back_to_back(ogg_file: bytes) -> None:
    scanner = OggPageScanner()
    pages = scanner.feed(ogg_file)
    assert [page.offset for page in pages] == [0] + [page.offset + page.length for page in pages[:-1]]
    assert b"".join(page.data for page in pages) == ogg_file
    assert scanner.consumed == len(ogg_file)
    assert scanner.skipped_bytes == 0


@needs_ffmpeg
def test_first_page_is_bos_and_last_is_eos(ogg_file: bytes) -> None:
    pages = scan([ogg_file])
    assert pages[0].bos and not pages[0].eos
    assert pages[-1].eos and not any(page.bos for page in pages[1:])


@needs_ffmpeg
@pytest.mark.parametrize("seed", range(4))
def test_random_splits_give_same_pages(ogg_file: bytes, seed: int) -> None:
    rng = random.Random(seed)
    assert scan(random_pieces(ogg_file, rng, max_piece=rng.choice([7, 300, 5000]))) == scan([ogg_file])


@needs_ffmpeg
def test_byte_by_byte_gives_same_pages(vorbis: bytes) -> None:
    assert scan([vorbis[i : i + 1] for i in range(len(vorbis))]) == scan([vorbis])


@needs_ffmpeg
def test_corrupted_page_is_rejected_and_scanner_resyncs(vorbis: bytes) -> None:
    pages = scan([vorbis])
    bad = pages[3]
    corrupted = bytearray(vorbis)
    corrupted[bad.offset + bad.length // 2] ^= 0x40
    scanner = OggPageScanner()
    assert scanner.feed(bytes(corrupted)) == pages[:3] + pages[4:]
    assert scanner.skipped_bytes == bad.length


@needs_ffmpeg
def test_garbage_between_pages_is_skipped(vorbis: bytes) -> None:
    pages = scan([vorbis])
    garbage = b"junk OggS\x00\x02 not a page" + random.Random(5).randbytes(500)
    cut = pages[4].offset
    found = scan(random_pieces(vorbis[:cut] + garbage + vorbis[cut:], random.Random(6), 400))
    assert [page.data for page in found] == [page.data for page in pages]
    assert found[4].offset == cut + len(garbage)


def test_scanner_keeps_at_most_a_split_capture_pattern_of_garbage() -> None:
    scanner = OggPageScanner()
    assert scanner.feed(b"x" * 1000 + b"Og") == []
    assert scanner.consumed == 1000


@needs_ffmpeg
def test_vorbis_header_pages_carry_three_packets(vorbis: bytes) -> None:
    pages = scan([vorbis])
    is_header, _ = header_sets(pages)
    assert packets_on([page for page, header in zip(pages, is_header) if header]) == 3
    assert is_header.index(False) == sum(is_header)  # headers come first, then only data


@needs_ffmpeg
def test_opus_header_pages_carry_two_packets(opus: bytes) -> None:
    pages = scan([opus])
    is_header, _ = header_sets(pages)
    assert packets_on([page for page, header in zip(pages, is_header) if header]) == 2
    assert is_header.index(False) == sum(is_header)


@needs_ffmpeg
def test_header_set_is_reported_once_with_the_header_pages(ogg_file: bytes) -> None:
    pages = scan([ogg_file])
    is_header, sets = header_sets(pages)
    assert sets == [b"".join(page.data for page, header in zip(pages, is_header) if header)]


@needs_ffmpeg
def test_chained_stream_yields_second_header_set(vorbis: bytes, opus: bytes) -> None:
    first, second = scan([vorbis]), scan([opus])
    _, sets = header_sets(scan([vorbis + opus]))
    assert sets == [header_sets(first)[1][0], header_sets(second)[1][0]]


@needs_ffmpeg
def test_pages_of_a_stream_joined_midway_are_data(vorbis: bytes) -> None:
    pages = scan([vorbis])
    is_header, sets = header_sets(pages[4:])
    assert not any(is_header) and sets == []


@needs_ffmpeg
def test_false_page_header_does_not_hold_back_following_pages(vorbis: bytes) -> None:
    claims_max_length = b"OggS\x00\x00" + bytes(20) + b"\xff" + b"\xff" * 255
    found = scan([claims_max_length + vorbis])
    assert [page.data for page in found] == [page.data for page in scan([vorbis])]


# -- bounds: a link whose header pages break one is skipped, never kept -----------------

def observe_all(data: bytes) -> list:
    tracker = OggHeaderTracker()
    return [tracker.observe(page) for page in scan([data])]


def test_header_set_over_max_bytes_is_skipped_once_and_handed_out_empty() -> None:
    body = bytes(60000)
    pages = ogg_page(1, 0, body, flags=2) + ogg_page(1, 1, body) + ogg_page(1, 2, body)
    roles = observe_all(pages + ogg_page(1, 3, b"audio", granule=960))
    assert 3 * len(body) > MAX_HEADER_SET
    assert [role.skipped for role in roles] == [None, None, f"header pages over {MAX_HEADER_SET} bytes", None]
    assert [role.header_set for role in roles] == [None, None, None, b""]


def body_for_page_length(length: int) -> bytes:
    """A body making ``ogg_page`` exactly ``length`` bytes long."""
    size = next(b for b in range(length) if 27 + b // 255 + 1 + b == length)
    return bytes(size)


def test_header_set_of_exactly_max_bytes_is_kept() -> None:
    first, second = ogg_page(1, 0, b"h", flags=2), ogg_page(1, 1, bytes(60000))
    third = ogg_page(1, 2, body_for_page_length(MAX_HEADER_SET - len(first) - len(second)))
    roles = observe_all(first + second + third + ogg_page(1, 3, b"audio", granule=1))
    assert len(first + second + third) == MAX_HEADER_SET
    assert roles[-1].header_set == first + second + third and not any(r.skipped for r in roles)


def test_stream_with_more_than_max_header_pages_is_skipped() -> None:
    pages = ogg_page(1, 0, b"head", flags=2) + b"".join(
        ogg_page(1, n, b"more") for n in range(1, MAX_HEADER_PAGES + 1))
    roles = observe_all(pages + ogg_page(1, 99, b"audio", granule=1))
    assert [role.skipped for role in roles if role.skipped] == [
        f"more than {MAX_HEADER_PAGES} header pages in one logical stream"]
    assert roles[MAX_HEADER_PAGES].skipped and roles[-1].header_set == b""
    assert observe_all(pages[:pages.rindex(b"OggS")] + ogg_page(1, 99, b"a", granule=1))[-1].header_set


def test_link_with_more_than_max_streams_is_skipped() -> None:
    bos = b"".join(ogg_page(100 + n, 0, b"bos", flags=2) for n in range(MAX_LINK_STREAMS + 1))
    roles = observe_all(bos + ogg_page(100, 1, b"audio", granule=1))
    assert [role.skipped for role in roles if role.skipped] == [
        f"more than {MAX_LINK_STREAMS} logical streams in one link"]
    assert roles[MAX_LINK_STREAMS].skipped and roles[-1].header_set == b""


def test_link_after_a_skipped_one_gets_its_header_set_again() -> None:
    too_many = b"".join(ogg_page(100 + n, 0, b"bos", flags=2) for n in range(MAX_LINK_STREAMS + 1))
    fine = ogg_page(7, 0, b"head", flags=2)
    roles = observe_all(too_many + ogg_page(100, 1, b"d", granule=1) + fine + ogg_page(7, 1, b"d", granule=1))
    assert roles[-1].header_set == fine and roles[-1].skipped is None


def test_bos_flood_keeps_the_tracker_bounded() -> None:
    """BOS pages with ever new serial numbers, some ending, never a data page (issue 9)."""
    tracker = OggHeaderTracker()
    pages = scan([b"".join(ogg_page(n, 0, b"bos", flags=2 | (4 if n % 3 else 0)) for n in range(2000))])
    tracemalloc.start()
    try:
        for page in pages[:1000]:
            tracker.observe(page)
        before = tracemalloc.get_traced_memory()[0]
        for page in pages[1000:]:
            tracker.observe(page)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 16 * 1024, f"the tracker grew by {grown} bytes over 1000 more BOS pages"


# -- comments of a link's header set (fanout.model.comments) -----------------------------

def header_set_of(ogg: bytes) -> bytes:
    tracker = OggHeaderTracker()
    return next(role.header_set for role in map(tracker.observe, scan([ogg])) if role.header_set)


@needs_ffmpeg
@pytest.mark.parametrize("codec", ["libvorbis", "libopus", "flac"])
def test_comments_of_a_link_come_from_its_comment_packet(codec: str) -> None:
    ogg = encode("-metadata", "title=Café song", "-metadata", "artist=The Band",
                 "-c:a", codec, "-f", "ogg", seconds=1)
    comments = link_comments(header_set_of(ogg))
    assert ("TITLE", "Café song") in comments and ("ARTIST", "The Band") in comments


@needs_ffmpeg
def test_each_chained_link_has_its_own_comments() -> None:
    first = encode("-metadata", "title=one", "-c:a", "libvorbis", "-f", "ogg", seconds=1)
    second = encode("-metadata", "title=two", "-c:a", "libopus", "-f", "ogg", seconds=1)
    tracker = OggHeaderTracker()
    sets = [role.header_set for role in map(tracker.observe, scan([first + second])) if role.header_set]
    assert [dict(link_comments(s))["TITLE"] for s in sets] == ["one", "two"]


def opus_header_set(tags: bytes) -> bytes:
    return ogg_page(9, 0, b"OpusHead" + bytes(11), flags=2) + ogg_page(9, 1, b"OpusTags" + tags)


def comment_list(vendor: bytes, *entries: bytes, count: int | None = None) -> bytes:
    body = struct.pack("<I", len(vendor)) + vendor
    body += struct.pack("<I", len(entries) if count is None else count)
    return body + b"".join(struct.pack("<I", len(e)) + e for e in entries)


def test_comments_not_in_utf8_are_read_as_latin1_and_keys_upper_cased() -> None:
    tags = comment_list(b"v", b"title=caf\xe9", b"Artist=\xc3\xa9t\xc3\xa9", b"no separator")
    assert link_comments(opus_header_set(tags)) == [("TITLE", "café"), ("ARTIST", "été")]


def test_comments_claiming_more_than_they_hold_end_where_the_packet_ends() -> None:
    tags = comment_list(b"vendor", b"TITLE=a", count=10**9) + struct.pack("<I", 10**6) + b"X=cut"
    assert link_comments(opus_header_set(tags)) == [("TITLE", "a")]


def test_mangled_comment_packets_and_cut_header_sets_never_raise() -> None:
    rng = random.Random(12)
    tags = comment_list(b"vendor", b"TITLE=a", b"ARTIST=b")
    for _ in range(2000):
        mangled = bytearray(tags)
        for _ in range(rng.randint(1, 8)):
            mangled[rng.randrange(len(mangled))] = rng.randrange(256)
        header_set = opus_header_set(bytes(mangled[: rng.randint(0, len(mangled))]))
        assert isinstance(link_comments(header_set), list)
        assert isinstance(link_comments(header_set[: rng.randrange(len(header_set))]), list)
