"""The bench stream: frames are valid MP3 and identify every position."""
import shutil
import subprocess

import pytest

from fanout.bench import payload


def test_frame_is_fixed_size_and_parses_back():
    frame = payload.build_frame(42, 123_456_789)
    assert len(frame) == payload.FRAME_SIZE
    assert payload.parse_frame(frame) == (42, 123_456_789)


@pytest.mark.parametrize("offset", [0, 3, 10, 21, 25, 33, 41, 45, 200, 383])
def test_any_changed_byte_invalidates_the_frame(offset):
    frame = bytearray(payload.build_frame(7, 1000))
    frame[offset] ^= 0x01
    assert payload.parse_frame(frame) is None


def test_consecutive_frames_count_up():
    data = payload.build_frames(5, 3, 99)
    counters = [payload.parse_frame(data[i:i + payload.FRAME_SIZE])[0]
                for i in range(0, len(data), payload.FRAME_SIZE)]
    assert counters == [5, 6, 7]


def test_filler_is_never_nul_nor_ff():
    filler = payload.TEMPLATE[payload.FILLER_AT:]
    assert 0 not in filler and 0xFF not in filler


def test_icy_block_always_ends_with_nul():
    block = payload.icy_block(b"x" * 16)
    assert block[0] == 2 and len(block) == 33 and block[-1] == 0


def test_histogram_buckets_are_monotonic_and_tight():
    values = [0, 1, 15, 16, 17, 100, 1000, 10**6, 3 * 10**9]
    indexes = [payload.hist_index(v) for v in values]
    assert indexes == sorted(indexes)
    for v in values[4:]:
        low, high = payload.hist_low(payload.hist_index(v)), payload.hist_low(payload.hist_index(v) + 1)
        assert low <= v < high and (high - low) / low <= 1 / 16


def test_percentile_of_one_sample_is_its_bucket():
    counts = [0] * payload.HIST_SIZE
    counts[payload.hist_index(5000)] = 1
    assert payload.hist_percentile(counts, 0.5) == pytest.approx(5000, rel=0.07)


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_ffmpeg_decodes_the_stream_as_48k_mono_mp3_without_errors(tmp_path):
    path = tmp_path / "bench.mp3"
    path.write_bytes(payload.build_frames(0, 200, 0))
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True, text=True, timeout=30, check=True)
    assert out.stderr == ""
    probe = subprocess.run(["ffmpeg", "-hide_banner", "-i", str(path)],
                           capture_output=True, text=True, timeout=30)
    assert "mp3" in probe.stderr and "48000 Hz" in probe.stderr and "mono" in probe.stderr
