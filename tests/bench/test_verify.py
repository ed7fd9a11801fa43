"""The swarm's verification reports corrupted, gapped, duplicated and mis-blocked streams.

Every test runs over the pure-Python reference and the compiled twin the swarm uses.
"""
import random

import pytest

from fanout.bench import payload
from fanout.bench import _swarm

FS = payload.FRAME_SIZE
NOW = 10_000_000_000  # receive time (ns) given to feed()
STAMP = NOW - 2_000_000  # frames were "sent" 2 ms earlier
ERRORS = ("corrupt_frames", "gaps", "duplicates", "icy_errors")


@pytest.fixture(params=["python", "compiled"])
def make_verifier(request):
    if request.param == "python":
        return payload.StreamVerifier
    return _swarm.StreamVerifier


def frames(first, count):
    return payload.build_frames(first, count, STAMP)


def feed_all(verifier, data, chunk=None):
    chunk = chunk or len(data) or 1
    for start in range(0, len(data), chunk):
        verifier.feed(data[start:start + chunk], NOW)
    return verifier.counts


def error_counts(counts):
    return {name: counts[name] for name in ERRORS}


def test_clean_stream_verifies_every_frame(make_verifier):
    counts = feed_all(make_verifier(), frames(0, 50))
    assert counts["frames_ok"] == 50 and counts["verified_bytes"] == 50 * FS
    assert error_counts(counts) == dict.fromkeys(ERRORS, 0)


def test_listener_joining_mid_frame_aligns_on_the_next_frame(make_verifier):
    counts = feed_all(make_verifier(), frames(0, 20)[1000:])
    assert counts["skipped_bytes"] == 3 * FS - 1000
    assert counts["frames_ok"] == 17 and counts["corrupt_frames"] == 0


def test_corrupted_byte_is_one_corrupt_frame(make_verifier):
    data = bytearray(frames(0, 20))
    data[7 * FS + 100] ^= 0x40
    verifier = make_verifier()
    counts = feed_all(verifier, bytes(data))
    assert error_counts(counts) == {**dict.fromkeys(ERRORS, 0), "corrupt_frames": 1}
    assert counts["frames_ok"] == 19 and verifier.errors() == 1


def test_missing_frame_is_a_gap(make_verifier):
    data = frames(0, 10) + frames(11, 10)
    counts = feed_all(make_verifier(), data)
    assert error_counts(counts) == {**dict.fromkeys(ERRORS, 0), "gaps": 1}
    assert counts["missing_frames"] == 1


def test_duplicated_frame_is_a_duplicate(make_verifier):
    data = frames(0, 10) + frames(9, 1) + frames(10, 10)
    counts = feed_all(make_verifier(), data)
    assert error_counts(counts) == {**dict.fromkeys(ERRORS, 0), "duplicates": 1}


def test_bytes_lost_inside_a_frame_resync_on_a_later_frame(make_verifier):
    data = frames(0, 10)
    data = data[:5 * FS + 50] + data[5 * FS + 150:]
    counts = feed_all(make_verifier(), data)
    assert counts["resyncs"] == 1 and counts["corrupt_frames"] >= 1
    assert counts["frames_ok"] >= 7 and counts["gaps"] == 0


def test_icy_blocks_are_stripped_and_checked(make_verifier):
    audio = frames(0, 40)
    blocks = [payload.icy_block(b"StreamTitle='';"), b"\0", payload.icy_block(b"StreamTitle='x';")]
    counts = feed_all(make_verifier(1000), payload.insert_icy(audio, 1000, blocks))
    assert counts["icy_blocks"] == len(audio) // 1000
    assert counts["audio_bytes"] == len(audio) and counts["frames_ok"] == 40
    assert error_counts(counts) == dict.fromkeys(ERRORS, 0)


def test_icy_block_with_wrong_text_is_an_icy_error(make_verifier):
    blocks = [payload.icy_block(b"Garbage='';")]
    counts = feed_all(make_verifier(1000), payload.insert_icy(frames(0, 10), 1000, blocks))
    assert counts["icy_errors"] == 1 and counts["corrupt_frames"] == 0


def test_misplaced_icy_block_is_reported(make_verifier):
    audio = frames(0, 20)
    block = payload.icy_block(b"StreamTitle='';")
    shifted = audio[:1007] + block + audio[1007:]  # 7 audio bytes too late
    counts = feed_all(make_verifier(1000), shifted)
    assert counts["icy_errors"] >= 1
    assert counts["corrupt_frames"] >= 1


def test_stream_without_expected_icy_blocks_is_reported(make_verifier):
    counts = feed_all(make_verifier(1000), frames(0, 20))
    assert counts["icy_errors"] >= 1


def test_latency_is_receive_time_minus_send_stamp(make_verifier):
    verifier = make_verifier()
    feed_all(verifier, frames(0, 10))
    p50 = payload.hist_percentile(verifier.latency_hist, 0.5)
    assert p50 == pytest.approx(2000, rel=0.07)  # µs


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_any_split_of_the_input_gives_the_same_counts(make_verifier, seed):
    rng = random.Random(seed)
    audio = bytearray(frames(0, 60))
    audio[20 * FS + 3] ^= 1
    data = payload.insert_icy(bytes(audio[500:]), 777, [payload.icy_block(b"StreamTitle='a';")])
    whole = feed_all(make_verifier(777), data)
    verifier, pos = make_verifier(777), 0
    while pos < len(data):
        step = rng.choice([1, 2, 5, 383, 384, 385, 1000, 5000])
        verifier.feed(data[pos:pos + step], NOW)
        pos += step
    assert verifier.counts == whole
    assert whole["corrupt_frames"] == 1


def test_both_implementations_agree_on_a_damaged_stream():
    rng = random.Random(7)
    data = bytearray(payload.insert_icy(frames(0, 300), 16000, []))
    for _ in range(20):
        data[rng.randrange(len(data))] = rng.randrange(256)
    reference, compiled = payload.StreamVerifier(16000), _swarm.StreamVerifier(16000)
    feed_all(reference, bytes(data), 4096)
    feed_all(compiled, bytes(data), 4096)
    assert compiled.counts == reference.counts
    assert compiled.latency_hist == reference.latency_hist


def test_compiled_layout_matches_the_reference():
    assert _swarm.frame_template() == payload.TEMPLATE
    for value in (0, 1, 15, 16, 17, 31, 32, 1000, 123_456, 10**9, 2**42, 2**60):
        assert _swarm.hist_index(value) == payload.hist_index(value)
    buf = bytearray(5 * FS + 10)
    assert _swarm.fill_frames(buf, 7, 12345) == 5
    assert bytes(buf[:5 * FS]) == payload.build_frames(7, 5, 12345)


def test_bytes_inserted_inside_a_frame_are_corruption_not_duplicates(make_verifier):
    data = frames(0, 10)
    data = data[:5 * FS + 50] + bytes(range(100)) + data[5 * FS + 50:]
    counts = feed_all(make_verifier(), data)
    assert counts["corrupt_frames"] >= 1 and counts["resyncs"] == 1
    assert counts["duplicates"] == 0 and counts["gaps"] == 0
