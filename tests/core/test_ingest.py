"""The compiled ingest (fanout._ingest) and its pure-Python twin (fanout.ingestref, the
oracle fanout.model.ingest applied to a ring) write identical rings from identical input.

Each case feeds both the same random chunking of real media made by ffmpeg (MP3, ADTS,
Ogg Vorbis, Opus and FLAC, chained Ogg, MP3 with inline ICY blocks as a relay gets it,
Ogg with garbage, Ogg breaking the header bounds) and compares, after every feed, the
ring header (write_seq, sync table, Ogg header block with its link start, everything) and
the data area, and the events each queued.
"""
from __future__ import annotations

import importlib
import os
import random
import shutil
import struct

import pytest

from fanout.model.ingest import UNLOCKED_FALLBACK
from fanout.model.ogg import MAX_HEADER_PAGES, MAX_HEADER_SET, MAX_LINK_STREAMS, ogg_crc
from fanout.protocol.icy import encode_block, stream_title_text
from tests.support import fuzzgen
from tests.support.splits import encode_tone, random_pieces

from .conftest import SMALL_CAPACITY

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")

HEADER_SIZE = 131072
GUARD = 65536
OFF_WRITE_SEQ, OFF_HDR_GEN, OFF_SYNC_COUNT, OFF_HDR_START = 16, 48, 64, 3144
OFF_STREAM_HEADER = 8208
COMPILED = importlib.import_module("fanout._ingest")
TWIN = importlib.import_module("fanout.ingestref")
RING_OF = {COMPILED: importlib.import_module("fanout._core"),
           TWIN: importlib.import_module("fanout.coreref")}
# Max piece sizes: splitting most headers, encoder-sized, larger than a page, than GUARD.
PIECES = (61, 400, 5000, 150_000)
METAINT = 8192
TONE_SECONDS = 4


def encode(*codec_args: str, freq: int = 440) -> bytes:
    return encode_tone(*codec_args, seconds=TONE_SECONDS, freq=freq)


def ogg_page(serial: int, seqno: int, body: bytes, *, flags: int = 0, granule: int = 0) -> bytes:
    """One valid Ogg page (body < 255*255 bytes)."""
    lacing = bytes([255] * (len(body) // 255) + [len(body) % 255])
    head = struct.pack("<4sBBqIIIB", b"OggS", 0, flags, granule, serial, seqno, 0, len(lacing))
    page = bytearray(head + lacing + body)
    page[22:26] = ogg_crc(bytes(page)).to_bytes(4, "little")
    return bytes(page)


def icy_wire(audio: bytes) -> bytes:
    """`audio` as a relay receives it: an ICY block after every METAINT audio bytes."""
    blocks = [encode_block(stream_title_text(song=b"Song %d" % n)) if n % 3 else b"\0"
              for n in range(len(audio) // METAINT)]
    return b"".join(audio[n * METAINT:(n + 1) * METAINT] + blocks[n] for n in range(len(blocks))) \
        + audio[len(blocks) * METAINT:]


@pytest.fixture(scope="module")
def media() -> dict[str, tuple[str, bytes, int]]:
    """name -> (ingest format, wire bytes, icy-metaint)."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    mp3 = encode("-c:a", "libmp3lame", "-b:a", "128k", "-f", "mp3")
    vorbis = encode("-c:a", "libvorbis", "-f", "ogg")
    opus = encode("-c:a", "libopus", "-f", "ogg", freq=660)
    flac = encode("-c:a", "flac", "-f", "ogg", freq=550)
    cut = len(vorbis) // 3
    return {
        "mp3": ("mpeg", mp3, 0),
        "adts": ("adts", encode("-c:a", "aac", "-f", "adts"), 0),
        "vorbis": ("ogg", vorbis, 0),
        "opus": ("ogg", opus, 0),
        "flac-in-ogg": ("ogg", flac, 0),
        "chained-ogg": ("ogg", vorbis + opus + flac + vorbis, 0),
        "ogg-with-garbage": ("ogg", vorbis[:cut] + b"junk OggS\0\2 no page" * 50 + vorbis[cut:], 0),
        "mp3-relayed-with-icy": ("mpeg", icy_wire(mp3), METAINT),
        "mp3-as-generic": ("generic", mp3, 0),
        "noise-labelled-mpeg": ("mpeg", bytes(b & 0x7F for b in random.Random(1).randbytes(3 * UNLOCKED_FALLBACK)), 0),
        "ogg-breaking-bounds": ("ogg", bound_breaking_ogg(vorbis), 0),
    }


def bound_breaking_ogg(vorbis: bytes) -> bytes:
    """Links that break each header bound, each followed by a well-formed link."""
    body = bytes(range(256)) * 300
    oversized = ogg_page(7, 0, body[:4000], flags=2) + b"".join(
        ogg_page(7, n, body[:60000]) for n in range(1, 4)) + ogg_page(7, 4, b"data", granule=1)
    many_pages = ogg_page(8, 0, b"head", flags=2) + b"".join(
        ogg_page(8, n, b"more") for n in range(1, MAX_HEADER_PAGES + 2)) + ogg_page(8, 99, b"d", granule=5)
    many_streams = b"".join(ogg_page(1000 + n, 0, b"bos", flags=2) for n in range(MAX_LINK_STREAMS + 5)) \
        + ogg_page(1000, 1, b"data", granule=9)
    return oversized + vorbis + many_pages + vorbis + many_streams + vorbis


class Pair:
    """The same input into a compiled Ingest and a twin Ingest, each on its own ring."""

    def __init__(self, fmt: str, icy_metaint: int = 0, capacity: int = SMALL_CAPACITY,
                 written: int = 0) -> None:
        self.rings = {impl: RING_OF[impl].Ring.create(capacity, self.ring_format(fmt))
                      for impl in (COMPILED, TWIN)}
        for ring in self.rings.values():
            ring.write(bytes(written))      # an earlier stream: the ingests start here
        self.ingests = {impl: impl.Ingest(ring, fmt, icy_metaint=icy_metaint)
                        for impl, ring in self.rings.items()}
        self.events: dict[object, list[tuple[int, bytes]]] = {COMPILED: [], TWIN: []}

    @staticmethod
    def ring_format(fmt: str) -> int:
        return 1 if fmt == "ogg" else 0

    def feed(self, piece: bytes) -> None:
        for impl, ingest in self.ingests.items():
            assert ingest.feed(piece) == len(piece)
            self.events[impl] += ingest.take_events()

    def header_area(self, impl: object) -> bytes:
        return os.pread(self.rings[impl].fd, HEADER_SIZE, 0)

    def assert_same_header(self) -> None:
        assert self.header_area(COMPILED) == self.header_area(TWIN)

    def assert_same_ring(self) -> None:
        """Header areas equal; data areas equal but for the (at most GUARD) bytes past
        write_seq, where the compiled ingest keeps an incomplete Ogg page unpublished."""
        self.assert_same_header()
        capacity = self.rings[COMPILED].capacity
        wseq = self.rings[COMPILED].write_seq
        areas = []
        for impl in (COMPILED, TWIN):
            area = bytearray(os.pread(self.rings[impl].fd, capacity, HEADER_SIZE))
            for seq in range(wseq, wseq + GUARD):
                area[seq % capacity] = 0
            areas.append(area)
        assert areas[0] == areas[1]

    def assert_same_events(self) -> None:
        for kind in (COMPILED.EVENT_TITLE, COMPILED.EVENT_HEADERS, COMPILED.EVENT_SKIPPED):
            assert ([e for e in self.events[COMPILED] if e[0] == kind]
                    == [e for e in self.events[TWIN] if e[0] == kind])

    def close(self) -> None:
        for impl in (COMPILED, TWIN):
            self.ingests[impl].close()
            self.rings[impl].close()


def raw_u64(ring, offset: int) -> int:
    return struct.unpack("<Q", os.pread(ring.fd, 8, offset))[0]


def test_both_implementations_share_the_names_and_bounds():
    for name in ("GUARD", "READ_EOF", "READ_AGAIN", "FEED_FD_MAX", "EVENT_TITLE",
                 "EVENT_HEADERS", "EVENT_SKIPPED", "UNLOCKED_FALLBACK", "DEFAULT_MIN_SYNC_GAP"):
        assert getattr(COMPILED, name) == getattr(TWIN, name), name
    assert (COMPILED.MAX_HEADER_SET, COMPILED.MAX_HEADER_PAGES, COMPILED.MAX_LINK_STREAMS) == (
        MAX_HEADER_SET, MAX_HEADER_PAGES, MAX_LINK_STREAMS)
    assert MAX_HEADER_SET == RING_OF[COMPILED].MAX_STREAM_HEADER == RING_OF[TWIN].MAX_STREAM_HEADER


def test_compiled_ogg_crc_matches_the_model():
    rng = random.Random(2)
    for size in (0, 1, 3, 4, 5, 27, 4097):
        data = rng.randbytes(size)
        assert COMPILED.ogg_crc(data) == ogg_crc(data)


@needs_ffmpeg
@pytest.mark.parametrize("max_piece", PIECES)
@pytest.mark.parametrize("name", [
    "mp3", "adts", "vorbis", "opus", "flac-in-ogg", "chained-ogg", "ogg-with-garbage",
    "mp3-relayed-with-icy", "mp3-as-generic", "noise-labelled-mpeg", "ogg-breaking-bounds"])
def test_compiled_and_twin_write_identical_rings(media, name, max_piece):
    fmt, wire, metaint = media[name]
    pair = Pair(fmt, metaint)
    try:
        pieces = random_pieces(wire, random.Random(f"{name}/{max_piece}"), max_piece)
        for number, piece in enumerate(pieces):
            pair.feed(piece)
            pair.assert_same_header()
            if number % 97 == 0:
                pair.assert_same_ring()
        pair.assert_same_ring()
        pair.assert_same_events()
        ring = pair.rings[COMPILED]
        assert raw_u64(ring, OFF_SYNC_COUNT) > 0, "the case never recorded a sync point"
    finally:
        pair.close()


@needs_ffmpeg
@pytest.mark.parametrize("name", ["chained-ogg", "mp3-relayed-with-icy", "adts"])
def test_pages_frames_and_blocks_across_the_end_of_the_data_area(media, name):
    """The ingests start 300 bytes before the data area wraps: the first pages and frames
    straddle the wrap, and parsing reads them from both ends."""
    fmt, wire, metaint = media[name]
    pair = Pair(fmt, metaint, written=SMALL_CAPACITY - 300)
    try:
        for piece in random_pieces(wire, random.Random(5), 700):
            pair.feed(piece)
            pair.assert_same_header()
        pair.assert_same_ring()
        pair.assert_same_events()
        assert raw_u64(pair.rings[COMPILED], OFF_SYNC_COUNT) > 0
        assert pair.rings[COMPILED].write_seq > SMALL_CAPACITY        # past the wrap
    finally:
        pair.close()


@needs_ffmpeg
def test_chained_ogg_publishes_each_link_with_its_first_data_page(media):
    _, wire, _ = media["chained-ogg"]
    pair = Pair("ogg", capacity=1 << 20)
    try:
        for piece in random_pieces(wire, random.Random(3), 3000):
            pair.feed(piece)
        headers = [payload for kind, payload in pair.events[COMPILED] if kind == COMPILED.EVENT_HEADERS]
        assert len(headers) == 4 and headers[0] == headers[3] != headers[1]
        ring = pair.rings[COMPILED]
        assert ring.stream_header() == (8, headers[3])
        # The last link starts at the last copy of the first file's first data page.
        first_data = wire.rindex(headers[3]) + len(headers[3])
        assert raw_u64(ring, OFF_HDR_START) == first_data
        assert ring.start_point(10**9) == (first_data, headers[3])
    finally:
        pair.close()


@needs_ffmpeg
def test_every_bound_breaking_link_is_skipped_with_one_reason(media):
    _, wire, _ = media["ogg-breaking-bounds"]
    pair = Pair("ogg", capacity=1 << 20)
    try:
        pair.feed(wire)
        skipped = [p for k, p in pair.events[COMPILED] if k == COMPILED.EVENT_SKIPPED]
        assert skipped == [f"header pages over {MAX_HEADER_SET} bytes".encode(),
                           f"more than {MAX_HEADER_PAGES} header pages in one logical stream".encode(),
                           f"more than {MAX_LINK_STREAMS} logical streams in one link".encode()]
        headers = [p for k, p in pair.events[COMPILED] if k == COMPILED.EVENT_HEADERS]
        assert headers[0::2] == [b"", b"", b""]          # skipped links: an empty set
        assert len(set(headers[1::2])) == 1 and headers[1]  # each vorbis link: its own set
    finally:
        pair.close()


@pytest.mark.parametrize("impl", [COMPILED, TWIN], ids=["compiled", "python"])
def test_header_set_larger_than_the_ring_area_never_reaches_the_ring(impl):
    ring = RING_OF[impl].Ring.create(SMALL_CAPACITY, 1)
    ingest = impl.Ingest(ring, "ogg")
    try:
        big = ogg_page(5, 0, bytes(60000), flags=2) + ogg_page(5, 1, bytes(60000)) \
            + ogg_page(5, 2, bytes(60000)) + ogg_page(5, 3, b"audio", granule=960)
        assert ingest.feed(big) == len(big)
        assert ring.stream_header() == (2, b"")
        assert ring.start_point(10**9) == (len(big) - len(ogg_page(5, 3, b"audio", granule=960)), b"")
        assert [kind for kind, _ in ingest.take_events()] == [impl.EVENT_SKIPPED, impl.EVENT_HEADERS]
    finally:
        ingest.close()
        ring.close()


@needs_ffmpeg
@pytest.mark.parametrize("name", ["mp3-relayed-with-icy", "chained-ogg"])
def test_feed_fd_reads_like_the_twin(media, name):
    """Both read the same pipe contents: the same read sizes, the same rings."""
    fmt, wire, metaint = media[name]
    pair = Pair(fmt, metaint)
    pipes = {impl: os.pipe() for impl in (COMPILED, TWIN)}
    try:
        for impl, (r, _) in pipes.items():
            os.set_blocking(r, False)
            assert pair.ingests[impl].feed_fd(r) == impl.READ_AGAIN
        rng = random.Random(4)
        pos = 0
        while pos < len(wire):
            piece = wire[pos:pos + rng.choice((300, 20_000, 60_000))]
            pos += len(piece)
            results = []
            for impl, (r, w) in pipes.items():
                os.write(w, piece)
                results.append(pair.ingests[impl].feed_fd(r, max_bytes=rng.choice((1, 10**6))))
                pair.events[impl] += pair.ingests[impl].take_events()
            assert results[0] == results[1]
            pair.assert_same_header()
        for impl, (r, w) in pipes.items():
            os.close(w)
            while (count := pair.ingests[impl].feed_fd(r)) != impl.READ_EOF:
                assert count > 0
        pair.assert_same_ring()
        pair.assert_same_events()
        assert pair.rings[COMPILED].write_seq > 0
    finally:
        pair.close()
        for r, _ in pipes.values():
            os.close(r)


@pytest.mark.parametrize("impl", [COMPILED, TWIN], ids=["compiled", "python"])
def test_feed_fd_raises_oserror_on_a_bad_fd(impl):
    ring = RING_OF[impl].Ring.create(SMALL_CAPACITY, 0)
    ingest = impl.Ingest(ring, "generic")
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    try:
        with pytest.raises(OSError):
            ingest.feed_fd(r)
    finally:
        ingest.close()
        ring.close()


@pytest.mark.parametrize("impl", [COMPILED, TWIN], ids=["compiled", "python"])
def test_ingest_starts_at_the_rings_write_seq(impl):
    """A relay reconnecting onto the same ring goes on where the last stream ended."""
    ring = RING_OF[impl].Ring.create(SMALL_CAPACITY, 0)
    try:
        ring.write(b"earlier stream")
        ingest = impl.Ingest(ring, "generic")
        ingest.feed(b"x" * 5000)
        ingest.close()
        assert ring.write_seq == 5014 and ring.start_point(10**9) == (14, b"")
    finally:
        ring.close()


@pytest.mark.parametrize("impl", [COMPILED, TWIN], ids=["compiled", "python"])
def test_unknown_format_and_negative_metaint_are_value_errors(impl):
    ring = RING_OF[impl].Ring.create(SMALL_CAPACITY, 0)
    try:
        with pytest.raises(ValueError):
            impl.Ingest(ring, "flac")
        with pytest.raises(ValueError):
            impl.Ingest(ring, "mpeg", icy_metaint=-1)
    finally:
        ring.close()


def test_compiled_ingest_refuses_what_is_not_a_ring():
    fd = os.memfd_create("not-a-ring")
    os.ftruncate(fd, HEADER_SIZE + SMALL_CAPACITY)

    class NotARing:
        capacity = SMALL_CAPACITY

        def __init__(self) -> None:
            self.fd = fd

    try:
        with pytest.raises(ValueError):
            COMPILED.Ingest(NotARing(), "generic")
    finally:
        os.close(fd)


@pytest.mark.parametrize("impl", [COMPILED, TWIN], ids=["compiled", "python"])
def test_feeding_a_closed_ingest_is_a_value_error(impl):
    ring = RING_OF[impl].Ring.create(SMALL_CAPACITY, 0)
    ingest = impl.Ingest(ring, "generic")
    ingest.close()
    ingest.close()
    with pytest.raises(ValueError):
        ingest.feed(b"x")
    ring.close()


# -- fuzzed input: the compiled parser against its oracle ----------------------------------

FUZZ_CASES = 10_000
FUZZ_FORMATS = ("ogg", "mpeg", "adts", "generic")


def fuzz_case(rng: random.Random) -> tuple[str, int, bytes]:
    """(format, icy_metaint, bytes): a stream of the format, of another one, or garbage,
    damaged a third of the time (tests/support/fuzzgen.py)."""
    make = rng.choice((fuzzgen.ogg_stream, fuzzgen.frames_stream(fuzzgen.mpeg_frame),
                       fuzzgen.frames_stream(fuzzgen.adts_frame),
                       lambda r: r.randbytes(r.randint(0, 3000))))
    data = make(rng)
    if rng.random() < 0.3:
        data = fuzzgen.mutate(data, rng)
    return rng.choice(FUZZ_FORMATS), rng.choice((0, 0, 0, 1, 7, 500)), data


def ring_state(ring) -> bytes:
    """The ring's header fields and table, its Ogg header block and its data."""
    head = os.pread(ring.fd, 4096, 0)
    return head + ring.stream_header()[1] + ring.read(0, ring.write_seq)


def test_fuzzed_streams_give_identical_rings_and_events():
    for index in range(FUZZ_CASES):
        rng = fuzzgen.case_rng(20240910, index)
        fmt, metaint, data = fuzz_case(rng)
        pair = Pair(fmt, metaint)
        try:
            for piece in fuzzgen.pieces(data, rng):
                pair.feed(piece)
                states = [ring_state(pair.rings[impl]) for impl in (COMPILED, TWIN)]
                assert states[0] == states[1], f"case {index}: {fmt}, metaint {metaint}, {data!r}"
            pair.assert_same_events()
        finally:
            pair.close()
