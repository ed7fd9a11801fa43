"""The ingest path: chunks, sync points, Ogg header sets and ICY stripping."""

from __future__ import annotations

import random
import shutil
import subprocess

import pytest

from fanout.model.ingest import Ingest, IngestChunk, format_for_content_type
from fanout.model.mpeg import MpegFrameTracker
from fanout.model.ogg import MAX_PAGE_SIZE, OggPage, OggPageScanner
from fanout.protocol.icy import encode_block, stream_title_text
from tests.support.splits import encode_tone, random_pieces


def encode(*codec_args: str, seconds: int = 8, freq: int = 440) -> bytes:
    return encode_tone(*codec_args, seconds=seconds, freq=freq)


needs_ffmpeg = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None, reason="ffmpeg/ffprobe not installed"
)


def decode_errors(data: bytes) -> tuple[int, bytes]:
    """Return (exit status, stderr) of ffmpeg decoding ``data`` completely."""
    done = subprocess.run(["ffmpeg", "-v", "error", "-i", "-", "-f", "null", "-"], input=data, capture_output=True)
    return done.returncode, done.stderr


@pytest.fixture(scope="module")
def vorbis() -> bytes:
    return encode("-c:a", "libvorbis", "-f", "ogg")


@pytest.fixture(scope="module")
def opus() -> bytes:
    return encode("-c:a", "libopus", "-f", "ogg", freq=660)


@pytest.fixture(scope="module")
def mp3() -> bytes:
    return encode("-c:a", "libmp3lame", "-b:a", "128k", "-f", "mp3")


@pytest.fixture(scope="module")
def flac() -> bytes:
    return encode("-c:a", "flac", "-f", "ogg", seconds=3, freq=550)


@pytest.fixture(params=["vorbis", "opus", "flac"])
def ogg_file(request: pytest.FixtureRequest) -> bytes:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    data: bytes = request.getfixturevalue(request.param)
    return data


class Ring:
    """What a ring writer would record from the chunks: bytes, sync points, headers."""

    def __init__(self, chunks: list[IngestChunk]) -> None:
        self.data = b""
        self.syncs: list[int] = []
        self.chunk_ends: list[int] = []
        self.headers: list[tuple[int, bytes]] = []  # (link start, header set)
        self.titles: list[bytes] = []
        for chunk in chunks:
            self.headers += [(len(self.data) + link.offset, link.pages) for link in chunk.headers]
            assert list(chunk.sync_offsets) == sorted(chunk.sync_offsets)
            assert all(0 <= offset < len(chunk.data) for offset in chunk.sync_offsets)
            self.syncs += [len(self.data) + offset for offset in chunk.sync_offsets]
            self.data += chunk.data
            self.chunk_ends.append(len(self.data))
            self.titles += chunk.titles

    def header_at(self, position: int) -> bytes:
        """The header set of the link ``position`` lies in."""
        return [header for start, header in self.headers if start <= position][-1]


def ingest(fmt: str, pieces: list[bytes], **options: int) -> Ring:
    feeder = Ingest(fmt, **options)
    return Ring([feeder.feed(piece) for piece in pieces])


def pages_of(data: bytes) -> list[OggPage]:
    return OggPageScanner().feed(data)


@pytest.mark.parametrize(
    ("content_type", "fmt"),
    [
        ("application/ogg", "ogg"),
        ("audio/ogg", "ogg"),
        ("video/ogg", "ogg"),
        ("audio/opus", "ogg"),
        ("Audio/Ogg; codecs=opus", "ogg"),
        ("audio/mpeg", "mpeg"),
        ("audio/mp3", "mpeg"),
        ("audio/x-mpeg", "mpeg"),
        ("audio/aac", "adts"),
        ("audio/aacp", "adts"),
        ("audio/x-aac", "adts"),
        ("audio/webm", "generic"),
        ("", "generic"),
        (None, "generic"),
    ],
)
def test_format_for_content_type(content_type: str | None, fmt: str) -> None:
    assert format_for_content_type(content_type) == fmt


def test_unknown_format_raises_value_error() -> None:
    with pytest.raises(ValueError):
        Ingest("flac")


@needs_ffmpeg
@pytest.mark.parametrize("seed", range(4))
def test_ogg_chunks_end_on_page_boundaries(ogg_file: bytes, seed: int) -> None:
    rng = random.Random(seed)
    ring = ingest("ogg", random_pieces(ogg_file, rng, max_piece=rng.choice([50, 2000, 20000])))
    page_ends = {page.offset + page.length for page in pages_of(ogg_file)}
    assert ring.data == ogg_file
    assert set(ring.chunk_ends) <= page_ends | {0}


@needs_ffmpeg
def test_ogg_sync_offsets_are_every_data_page_start(ogg_file: bytes) -> None:
    ring = ingest("ogg", random_pieces(ogg_file, random.Random(3), 3000))
    pages = pages_of(ogg_file)
    assert ring.syncs == [page.offset for page in pages if page.granule not in (0, -1)]


@needs_ffmpeg
def test_ogg_stream_header_is_reported_once_with_the_first_sync_as_link_start(ogg_file: bytes) -> None:
    ring = ingest("ogg", random_pieces(ogg_file, random.Random(4), 3000))
    assert ring.headers == [(ring.syncs[0], ogg_file[: ring.syncs[0]])]


@needs_ffmpeg
def test_ogg_header_plus_tail_from_any_sync_offset_decodes(ogg_file: bytes) -> None:
    ring = ingest("ogg", random_pieces(ogg_file, random.Random(5), 4000))
    for sync in ring.syncs[1:]:
        assert decode_errors(ring.header_at(sync) + ring.data[sync:]) == (0, b"")


@needs_ffmpeg
def test_ogg_tail_without_stream_header_does_not_decode(ogg_file: bytes) -> None:
    ring = ingest("ogg", [ogg_file])
    assert decode_errors(ring.data[ring.syncs[2] :])[0] != 0


@needs_ffmpeg
@pytest.mark.parametrize("second", ["opus", "flac"])
def test_chained_ogg_joined_in_its_second_link_decodes(vorbis: bytes, second: str, request) -> None:
    """A listener given the header set of the link its start lies in decodes (Vorbis, then
    Opus or FLAC-in-Ogg)."""
    other: bytes = request.getfixturevalue(second)
    ring = ingest("ogg", random_pieces(vorbis + other, random.Random(8), 4000))
    assert len(ring.headers) == 2
    later = [sync for sync in ring.syncs if sync > len(vorbis)]
    assert ring.header_at(later[1]) == other[: pages_of(other)[2].offset]
    assert decode_errors(ring.header_at(later[1]) + ring.data[later[1]:]) == (0, b"")


@needs_ffmpeg
def test_chunk_with_new_header_set_gives_its_link_start(vorbis: bytes, opus: bytes) -> None:
    feeder = Ingest("ogg")
    feeder.feed(vorbis[: pages_of(vorbis)[-2].offset])
    chunk = feeder.feed(vorbis[pages_of(vorbis)[-2].offset :] + opus)
    first_opus_data = len(chunk.data) - len(opus) + pages_of(opus)[2].offset
    assert [(link.offset, link.pages) for link in chunk.headers] == [
        (first_opus_data, opus[: pages_of(opus)[2].offset])]
    last_page = pages_of(vorbis)[-1].offset - pages_of(vorbis)[-2].offset
    assert chunk.sync_offsets[:3] == (0, last_page, first_opus_data)  # the old link's too


@needs_ffmpeg
def test_chained_links_in_one_chunk_are_each_reported(vorbis: bytes, opus: bytes) -> None:
    chunk = Ingest("ogg").feed(vorbis + opus + vorbis)
    firsts = [pages_of(vorbis)[2].offset, len(vorbis) + pages_of(opus)[2].offset,
              len(vorbis) + len(opus) + pages_of(vorbis)[2].offset]
    assert [link.offset for link in chunk.headers] == firsts
    assert [link.pages for link in chunk.headers] == [
        vorbis[: firsts[0]], opus[: pages_of(opus)[2].offset], vorbis[: firsts[0]]]


@needs_ffmpeg
def test_ogg_incomplete_page_is_held_back_until_complete(vorbis: bytes) -> None:
    page = pages_of(vorbis)[3]
    feeder = Ingest("ogg")
    feeder.feed(vorbis[: page.offset])
    assert feeder.feed(vorbis[page.offset : page.offset + page.length - 1]).data == b""
    chunk = feeder.feed(vorbis[page.offset + page.length - 1 : page.offset + page.length])
    assert chunk.data == page.data and chunk.sync_offsets == (0,)


@needs_ffmpeg
def test_ogg_garbage_is_passed_through_without_sync_points(vorbis: bytes) -> None:
    cut = pages_of(vorbis)[4].offset
    garbage = b"not ogg at all " * 100
    ring = ingest("ogg", random_pieces(vorbis[:cut] + garbage + vorbis[cut:], random.Random(9), 700))
    assert ring.data == vorbis[:cut] + garbage + vorbis[cut:]
    assert not any(cut < sync < cut + len(garbage) for sync in ring.syncs)


def test_ogg_garbage_without_capture_pattern_is_not_held_back() -> None:
    garbage = random.Random(10).randbytes(200_000).replace(b"OggS", b"oggs").rstrip(b"O")
    assert Ingest("ogg").feed(garbage).data == garbage


def test_ogg_hold_back_of_a_false_page_header_ends_at_max_page_size() -> None:
    claims_max_length = b"OggS\x00\x00" + bytes(20) + b"\xff" + b"\xff" * 255
    garbage = random.Random(14).randbytes(100_000).replace(b"OggS", b"oggs").rstrip(b"O")
    feeder = Ingest("ogg")
    assert feeder.feed(claims_max_length + garbage[: MAX_PAGE_SIZE - len(claims_max_length) - 1]).data == b""
    assert feeder.feed(garbage[MAX_PAGE_SIZE - len(claims_max_length) - 1 :]).data == claims_max_length + garbage


@needs_ffmpeg
@pytest.mark.parametrize("gap", [1, 4096, 20000])
def test_mpeg_sync_offsets_respect_min_sync_gap(mp3: bytes, gap: int) -> None:
    ring = ingest("mpeg", random_pieces(mp3, random.Random(gap), 1500), min_sync_gap=gap)
    assert ring.syncs and all(b - a >= gap for a, b in zip(ring.syncs, ring.syncs[1:]))


@needs_ffmpeg
def test_mpeg_sync_offsets_are_frame_starts(mp3: bytes) -> None:
    ring = ingest("mpeg", random_pieces(mp3, random.Random(11), 1500), min_sync_gap=1)
    frames = MpegFrameTracker().feed(mp3)
    assert ring.data == mp3
    assert set(ring.syncs) <= set(frames) and len(ring.syncs) > len(frames) * 0.9


@needs_ffmpeg
def test_adts_sync_offsets_are_frame_starts() -> None:
    aac = encode("-c:a", "aac", "-f", "adts")
    ring = ingest("adts", random_pieces(aac, random.Random(12), 1500), min_sync_gap=1)
    assert set(ring.syncs) <= set(MpegFrameTracker("adts").feed(aac)) and ring.syncs


def test_generic_sync_at_chunk_starts_at_most_once_per_gap() -> None:
    pieces = [b"x" * size for size in (1000, 1000, 3000, 100, 5000, 0, 10)]
    ring = ingest("generic", pieces, min_sync_gap=4096)
    assert ring.syncs == [0, 5000, 10100]


@needs_ffmpeg
def test_icy_metadata_is_stripped_inside_ingest(mp3: bytes) -> None:
    metaint = 8192
    blocks = [encode_block(stream_title_text(song=b"Song %d" % n)) for n in range(len(mp3) // metaint)]
    wire = b"".join(mp3[n * metaint : (n + 1) * metaint] + blocks[n] for n in range(len(blocks)))
    wire += mp3[len(blocks) * metaint :]
    ring = ingest("mpeg", random_pieces(wire, random.Random(13), 3000), icy_metaint=metaint)
    assert ring.data == mp3
    assert ring.titles == [block[1:] for block in blocks]
    assert set(ring.syncs) <= set(MpegFrameTracker().feed(mp3))


def test_mislabelled_mpeg_falls_back_to_chunk_start_sync_points():
    from fanout.model.ingest import UNLOCKED_FALLBACK

    rng = random.Random(7)
    ingest = Ingest("mpeg")
    noise = bytes(rng.getrandbits(8) & 0x7F for _ in range(4096))  # no 0xFF: never a frame sync
    syncs, position = [], 0
    for _ in range(40):
        chunk = ingest.feed(noise)
        syncs += [position + offset for offset in chunk.sync_offsets]
        position += len(chunk.data)
    assert syncs, "no sync point at all: a listener would get no burst"
    assert syncs[0] >= UNLOCKED_FALLBACK
    assert all(b - a >= UNLOCKED_FALLBACK for a, b in zip(syncs, syncs[1:]))
