"""MPEG audio and ADTS frame headers and the frame tracker, on files made by ffmpeg."""

from __future__ import annotations

import random
import shutil
import subprocess

import pytest

from fanout.model.intro import id3v2_length
from fanout.model.mpeg import (
    ADTS, MPEG, MpegFrameTracker, adts_frame_duration, adts_frame_length, byte_rate,
    frame_duration, frame_length,
)
from tests.support.splits import encode_tone, random_pieces


def encode(*codec_args: str, seconds: int = 5, freq: int = 440) -> bytes:
    return encode_tone(*codec_args, seconds=seconds, freq=freq)


needs_ffmpeg = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None, reason="ffmpeg/ffprobe not installed"
)

# (codec args, tracker kind) per fixture name
FILES = {
    "mp3": (("-c:a", "libmp3lame", "-b:a", "128k", "-f", "mp3"), "mpeg"),
    "mp2": (("-c:a", "mp2", "-b:a", "192k", "-f", "mp2"), "mpeg"),
    "mp3_22k": (("-ar", "22050", "-c:a", "libmp3lame", "-b:a", "32k", "-f", "mp3"), "mpeg"),
    "adts": (("-c:a", "aac", "-b:a", "96k", "-f", "adts"), "adts"),
}


def packet_offsets(data: bytes) -> list[int]:
    """Byte offsets of the audio packets as ffprobe demuxes them."""
    command = ["ffprobe", "-v", "error", "-show_entries", "packet=pos", "-of", "csv=p=0", "-"]
    out = subprocess.run(command, input=data, check=True, capture_output=True).stdout
    return [int(line) for line in out.split()]


@pytest.fixture(scope="module", params=sorted(FILES))
def media(request: pytest.FixtureRequest) -> tuple[bytes, str]:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    codec_args, kind = FILES[request.param]
    return encode(*codec_args), kind


def track(pieces: list[bytes], kind: str = "mpeg") -> list[int]:
    tracker = MpegFrameTracker(kind)
    return [offset for piece in pieces for offset in tracker.feed(piece)]


def mpeg_header(version: int, layer: int, bitrate_index: int, rate_index: int, padding: int = 0) -> bytes:
    return bytes((0xFF, 0xE0 | version << 3 | layer << 1 | 1, bitrate_index << 4 | rate_index << 2 | padding << 1, 0))


MPEG1, MPEG2, MPEG25 = 3, 2, 0
LAYER1, LAYER2, LAYER3 = 3, 2, 1


@pytest.mark.parametrize(
    ("header", "length"),
    [
        (mpeg_header(MPEG1, LAYER3, 9, 0), 417),  # 128 kbit/s, 44.1 kHz
        (mpeg_header(MPEG1, LAYER3, 9, 0, padding=1), 418),
        (mpeg_header(MPEG1, LAYER3, 14, 1), 960),  # 320 kbit/s, 48 kHz
        (mpeg_header(MPEG1, LAYER2, 10, 1), 576),  # 192 kbit/s, 48 kHz
        (mpeg_header(MPEG1, LAYER1, 1, 2), 48),  # 32 kbit/s, 32 kHz
        (mpeg_header(MPEG1, LAYER1, 14, 0, padding=1), 488),  # 448 kbit/s, 44.1 kHz
        (mpeg_header(MPEG2, LAYER3, 8, 0), 208),  # 64 kbit/s, 22.05 kHz
        (mpeg_header(MPEG2, LAYER2, 8, 0), 417),  # layer II keeps 1152 samples per frame
        (mpeg_header(MPEG25, LAYER3, 1, 2), 72),  # 8 kbit/s, 8 kHz
    ],
)
def test_frame_length_table(header: bytes, length: int) -> None:
    assert frame_length(header) == length


@pytest.mark.parametrize(
    "header",
    [
        b"\xfe\xfb\x90\x00",  # sync bits incomplete
        mpeg_header(1, LAYER3, 9, 0),  # reserved version
        mpeg_header(MPEG1, 0, 9, 0),  # reserved layer
        mpeg_header(MPEG1, LAYER3, 0, 0),  # free format
        mpeg_header(MPEG1, LAYER3, 15, 0),  # bad bitrate
        mpeg_header(MPEG1, LAYER3, 9, 3),  # reserved sample rate
    ],
)
def test_frame_length_rejects_invalid_header(header: bytes) -> None:
    assert frame_length(header) is None


def adts_header(length: int, rate_index: int = 4, crc: bool = False) -> bytes:
    """An AAC-LC stereo ADTS header (protection_absent unless ``crc``)."""
    protection_absent = 0 if crc else 1
    return bytes(
        (
            0xFF,
            0xF0 | protection_absent,
            0x40 | rate_index << 2,
            0x80 | length >> 11,
            (length >> 3) & 0xFF,
            (length & 7) << 5 | 0x1F,
        )
    )


def test_adts_frame_length_reads_13_bit_field() -> None:
    assert adts_frame_length(adts_header(371)) == 371
    assert adts_frame_length(adts_header(8191)) == 8191


@pytest.mark.parametrize(
    "header",
    [
        adts_header(371, rate_index=13),  # reserved sampling frequency
        adts_header(6),  # shorter than its own header
        adts_header(8, crc=True),  # shorter than header + CRC
        b"\xff\xf3\x50\x80\x2e\x7f",  # layer bits set: that is MPEG audio, not ADTS
    ],
)
def test_adts_frame_length_rejects_invalid_header(header: bytes) -> None:
    assert adts_frame_length(header) is None


@needs_ffmpeg
def test_frame_offsets_match_ffprobe_packets(media: tuple[bytes, str]) -> None:
    data, kind = media
    assert track([data], kind) == packet_offsets(data)


@needs_ffmpeg
@pytest.mark.parametrize("seed", range(4))
def test_random_splits_give_same_offsets(media: tuple[bytes, str], seed: int) -> None:
    data, kind = media
    rng = random.Random(seed)
    assert track(random_pieces(data, rng, max_piece=rng.choice([3, 200, 3000])), kind) == track([data], kind)


@needs_ffmpeg
def test_garbage_prefix_is_skipped(media: tuple[bytes, str]) -> None:
    data, kind = media
    garbage = random.Random(7).randbytes(3000) + b"\xff\xfb\x90"  # ends in a lone MP3 header
    assert track([garbage + data], kind) == [offset + len(garbage) for offset in track([data], kind)]


@needs_ffmpeg
def test_lock_is_lost_on_garbage_and_regained(media: tuple[bytes, str]) -> None:
    data, kind = media
    frames = track([data], kind)
    cut = frames[len(frames) // 2]
    garbage = b"\x00" * 777
    found = track([data[:cut] + garbage + data[cut:]], kind)
    assert found == [offset if offset < cut else offset + len(garbage) for offset in frames]


def test_lone_valid_header_is_not_reported() -> None:
    assert track([mpeg_header(MPEG1, LAYER3, 9, 0) + b"\x00" * 1000]) == []


def test_two_chained_frames_are_reported_once_confirmed() -> None:
    frame = mpeg_header(MPEG1, LAYER3, 9, 0) + b"\x00" * 413
    tracker = MpegFrameTracker()
    assert tracker.feed(frame) == []
    assert tracker.feed(frame[:4]) == [0, 417]


def test_unknown_kind_raises_value_error() -> None:
    with pytest.raises(ValueError):
        MpegFrameTracker("flac")


# -- durations and byte rates (fallback files are paced by them) -------------------------------

@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (mpeg_header(MPEG1, LAYER3, 9, 0), 1152 / 44100),
        (mpeg_header(MPEG1, LAYER2, 10, 1), 1152 / 48000),
        (mpeg_header(MPEG1, LAYER1, 1, 2), 384 / 32000),
        (mpeg_header(MPEG2, LAYER3, 8, 0), 576 / 22050),  # half the samples per frame
        (mpeg_header(MPEG2, LAYER2, 8, 0), 1152 / 22050),
        (mpeg_header(MPEG25, LAYER3, 1, 2), 576 / 8000),
        (mpeg_header(MPEG1, LAYER3, 0, 0), None),  # free format: not a header we read
    ],
)
def test_frame_duration(header: bytes, seconds: float | None) -> None:
    assert frame_duration(header) == seconds


def test_adts_frame_duration_counts_its_raw_data_blocks() -> None:
    one = adts_header(371, rate_index=4) + b"\x00"  # 44.1 kHz, one block
    three = adts_header(371, rate_index=3) + b"\x02"  # 48 kHz, three blocks
    assert adts_frame_duration(one) == 1024 / 44100
    assert adts_frame_duration(three) == 3 * 1024 / 48000
    assert adts_frame_duration(adts_header(371)) is None  # the seventh byte missing
    assert adts_frame_duration(adts_header(371, rate_index=13) + b"\x00") is None


def test_byte_rate_needs_two_frames() -> None:
    frame = mpeg_header(MPEG1, LAYER3, 9, 0) + b"\x00" * 413
    assert byte_rate(frame * 3) == pytest.approx(417 * 44100 / 1152)
    assert byte_rate(frame) is None
    assert byte_rate(b"\x00" * 4096) is None


@needs_ffmpeg
@pytest.mark.parametrize(("codec_args", "kind", "bits_per_second"), [
    (FILES["mp3"][0], MPEG, 128000),
    (FILES["mp2"][0], MPEG, 192000),
    (FILES["mp3_22k"][0], MPEG, 32000),
    (FILES["adts"][0], ADTS, 96000),
])
def test_byte_rate_of_encoded_files_is_their_bitrate(codec_args, kind, bits_per_second) -> None:
    data = encode(*codec_args)
    rate = byte_rate(data[id3v2_length(data):][:65536], kind)
    # CBR MPEG to the byte; ffmpeg's AAC encoder keeps to its target only on average.
    assert rate == pytest.approx(bits_per_second / 8, rel=0.01 if kind == MPEG else 0.1)
