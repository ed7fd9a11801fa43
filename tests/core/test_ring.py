"""The shared-memory ring: layout, writes and reads, sync points, seqlocked blocks, counters."""
from __future__ import annotations

import os
import random
import struct

import pytest

from .conftest import SMALL_CAPACITY
from .streams import icy_block

GUARD = 65536
HEADER_SIZE = 131072
PAGE = 4096
OFF_STREAM_HEADER = 8208
OFF_HDR_START = 3144


def raw_u64(ring, offset: int) -> int:
    return struct.unpack("<Q", os.pread(ring.fd, 8, offset))[0]


def raw_data(ring, index: int, n: int) -> bytes:
    return os.pread(ring.fd, n, HEADER_SIZE + index)


# -- capacity and layout ----------------------------------------------------------------

@pytest.mark.parametrize(("queue", "burst", "expected"), [
    (512000, 65536, 512000 + 2 * GUARD),        # the defaults: 157 pages, not 1 MiB
    (512000, 0, 512000 + 2 * GUARD),            # the burst lags inside the queue
    (0, 0, 2 * GUARD),                          # the smallest ring
    (1, 0, 2 * GUARD + PAGE),                   # rounded up to a whole page
    (100_000, 200_000, 81 * PAGE),              # a burst over the queue still fits
    (10_000_000, 1_000_000, 2474 * PAGE),
])
def test_capacity_for_is_the_larger_of_queue_and_burst_and_two_guards_in_pages(
        core, queue, burst, expected):
    assert core.ring_capacity_for(queue, burst) == expected
    assert expected % PAGE == 0 and expected - PAGE < max(queue, burst) + 2 * GUARD


def test_capacity_for_rejects_negative_sizes(core):
    with pytest.raises(ValueError):
        core.ring_capacity_for(-1, 0)
    with pytest.raises(ValueError):
        core.ring_capacity_for(0, -1)


def test_constants_match_the_architecture(core):
    assert (core.HEADER_SIZE, core.GUARD, core.MAX_WORKERS) == (HEADER_SIZE, GUARD, 64)
    assert (core.PAGE, core.MIN_CAPACITY, core.WAKE_BATCH) == (PAGE, 2 * GUARD, 8192)
    assert core.MAX_STREAM_HEADER == HEADER_SIZE - OFF_STREAM_HEADER
    assert (core.SYNC_SLOTS, core.SYNC_MIN_GAP, core.MAX_META_BLOCK) == (256, 4096, 4081)
    assert core.INITIAL_METADATA == b"\x01StreamTitle='';\x00"
    assert (core.OK, core.WOULD_BLOCK, core.LAPPED, core.ERROR) == (0, 1, 2, 3)


def test_create_initialises_the_header(core, make_ring):
    ring = make_ring(SMALL_CAPACITY, core.FORMAT_OGG)
    magic, version, capacity = struct.unpack("<IIQ", os.pread(ring.fd, 16, 0))
    assert (magic, version, capacity) == (0x474E5246, 3, SMALL_CAPACITY)
    assert (ring.capacity, ring.fmt, ring.write_seq, ring.flags) == (SMALL_CAPACITY, 1, 0, 0)
    assert ring.metadata() == (2, core.INITIAL_METADATA)
    assert os.pread(ring.fd, 17, 4096) == core.INITIAL_METADATA
    assert ring.stream_header() == (0, b"")
    assert ring.listener_count() == 0 and ring.bytes_sent() == 0
    assert os.fstat(ring.fd).st_size == HEADER_SIZE + SMALL_CAPACITY


@pytest.mark.parametrize("capacity", [0, 2 * GUARD - PAGE, 4 * GUARD + 1, 3 * GUARD + 100])
def test_create_rejects_capacity_below_two_guards_or_not_in_whole_pages(core, capacity):
    with pytest.raises(ValueError):
        core.Ring.create(capacity, core.FORMAT_GENERIC)


def test_smallest_ring_is_two_guards(core, make_ring):
    ring = make_ring(2 * GUARD)
    ring.write(bytes(range(256)) * 1024)            # two laps of it
    assert ring.read(ring.write_seq - GUARD, GUARD) == (bytes(range(256)) * 256)


def test_create_rejects_unknown_format(core):
    with pytest.raises(ValueError):
        core.Ring.create(SMALL_CAPACITY, 7)


def test_flags_round_trip(ring, core):
    ring.set_flags(core.FLAG_LIVE | core.FLAG_ENDED)
    assert ring.flags == 3
    assert raw_u64(ring, 24) & 0xFFFFFFFF == 3


def test_close_is_idempotent_and_later_use_raises(core):
    ring = core.Ring.create(SMALL_CAPACITY, 0)
    ring.close()
    ring.close()
    for use in (lambda: ring.write_seq, lambda: ring.fd, lambda: ring.write(b"x"),
                lambda: ring.read(0, 1), ring.metadata, ring.listener_count):
        with pytest.raises(ValueError):
            use()


def test_ring_cannot_be_constructed_directly(core):
    with pytest.raises(TypeError):
        core.Ring()


# -- attach ---------------------------------------------------------------------------

def test_attach_shares_the_memory_and_dups_the_fd(core, ring):
    other = core.Ring.attach(ring.fd)
    try:
        assert other.fd != ring.fd
        ring.write(b"shared bytes")
        assert other.write_seq == 12 and other.read(0, 12) == b"shared bytes"
        assert (other.capacity, other.fmt) == (ring.capacity, ring.fmt)
    finally:
        other.close()
    assert ring.read(0, 6) == b"shared"  # closing the attached one leaves ours open


def test_attach_rejects_bad_magic(core):
    fd = os.memfd_create("not-a-ring")
    try:
        os.ftruncate(fd, HEADER_SIZE + SMALL_CAPACITY)
        os.pwrite(fd, struct.pack("<IIQ", 0xDEADBEEF, 1, SMALL_CAPACITY), 0)
        with pytest.raises(ValueError):
            core.Ring.attach(fd)
    finally:
        os.close(fd)


@pytest.mark.parametrize("version", [2, 4])
def test_attach_rejects_other_layout_version(core, ring, version):
    os.pwrite(ring.fd, struct.pack("<I", version), 4)
    with pytest.raises(ValueError):
        core.Ring.attach(ring.fd)


def test_attach_rejects_file_shorter_than_its_capacity(core, ring):
    os.pwrite(ring.fd, struct.pack("<Q", 2 * SMALL_CAPACITY), 8)
    with pytest.raises(ValueError):
        core.Ring.attach(ring.fd)


def test_attach_rejects_tiny_file(core):
    fd = os.memfd_create("tiny")
    try:
        os.write(fd, b"FRNG")
        with pytest.raises(ValueError):
            core.Ring.attach(fd)
    finally:
        os.close(fd)


# -- write and read -------------------------------------------------------------------

def test_write_then_read_round_trip(ring):
    ring.write(b"hello ")
    ring.write(bytearray(b"wide "))
    ring.write(memoryview(b"world"))
    assert ring.write_seq == 16
    assert ring.read(0, 16) == b"hello wide world"
    assert ring.read(6, 4) == b"wide"


def test_read_is_clipped_to_write_seq(ring):
    ring.write(b"abc")
    assert ring.read(1, 100) == b"bc"
    assert ring.read(3, 10) == b""
    assert ring.read(50, 10) == b""


def test_write_wraps_across_the_end_of_the_data_area(ring):
    rng = random.Random(1)
    head = rng.randbytes(SMALL_CAPACITY - 10)
    tail = rng.randbytes(100)
    ring.write(head)
    ring.write(tail)
    assert ring.write_seq == SMALL_CAPACITY + 90
    assert raw_data(ring, SMALL_CAPACITY - 10, 10) == tail[:10]
    assert raw_data(ring, 0, 90) == tail[10:]
    assert ring.read(SMALL_CAPACITY - 50, 140) == head[-40:] + tail


def test_write_larger_than_guard_lands_intact(make_ring):
    ring = make_ring(8 * GUARD)
    data = random.Random(2).randbytes(3 * GUARD + 7)
    ring.write(data)
    assert ring.read(0, len(data)) == data


def test_write_larger_than_capacity_keeps_only_the_newest_bytes(core, ring):
    data = random.Random(3).randbytes(2 * SMALL_CAPACITY + 123)
    ring.write(data)
    wseq = ring.write_seq
    assert wseq == len(data)
    safe = SMALL_CAPACITY - GUARD
    assert ring.read(wseq - safe, safe) == data[-safe:]
    with pytest.raises(core.LappedError):
        ring.read(wseq - safe - 1, 1)
    with pytest.raises(core.LappedError):
        ring.read(0, 1)


def test_read_rejects_negative_arguments(ring):
    with pytest.raises(ValueError):
        ring.read(-1, 1)
    with pytest.raises(ValueError):
        ring.read(0, -1)


# -- sync points and start position ---------------------------------------------------

def test_start_position_without_sync_points_is_write_seq(ring):
    ring.write(bytes(1000))
    assert ring.start_position(500) == 1000
    assert ring.start_position(0) == 1000


def test_start_position_is_oldest_sync_point_within_burst(ring):
    for seq in (0, 100, 600, 900):
        ring.add_sync_point(seq)
    ring.write(bytes(1000))
    assert ring.start_position(500) == 600
    assert ring.start_position(1000) == 0
    assert ring.start_position(10**9) == 0


def test_start_position_falls_back_to_newest_sync_point_older_than_burst(ring):
    for seq in (100, 600, 900):
        ring.add_sync_point(seq)
    ring.write(bytes(1000))
    assert ring.start_position(50) == 900


def test_start_position_burst_zero_takes_sync_point_at_write_seq(ring):
    ring.write(bytes(1000))
    ring.add_sync_point(1000)
    assert ring.start_position(0) == 1000


def test_start_position_ignores_sync_points_no_longer_safely_inside(ring):
    ring.add_sync_point(0)
    ring.add_sync_point(100)
    ring.write(bytes(SMALL_CAPACITY - GUARD + 50))   # 0 is lapped now, 100 is not
    assert ring.start_position(10**9) == 100
    ring.write(bytes(100))                           # now both are too old
    assert ring.start_position(10**9) == ring.write_seq


def test_start_position_ignores_sync_point_ahead_of_write_seq(ring):
    ring.add_sync_point(10)
    ring.write(bytes(100))
    ring.add_sync_point(2000)                        # recorded before its bytes are written
    assert ring.start_position(50) == 10
    ring.write(bytes(1900))
    assert ring.start_position(0) == 2000


def test_sync_table_keeps_the_newest_256_points(core, ring):
    for i in range(300):
        ring.add_sync_point(10 * i)
    ring.write(bytes(3000))
    assert raw_u64(ring, 64) == 300                  # sync_count
    assert ring.start_position(10**9) == 10 * (300 - core.SYNC_SLOTS)


def test_add_sync_point_ignores_non_increasing_sequences(ring):
    ring.add_sync_point(100)
    ring.add_sync_point(50)
    ring.add_sync_point(100)
    assert raw_u64(ring, 64) == 1
    assert raw_u64(ring, 72) == 100


# -- metadata and stream header seqlocks ----------------------------------------------

def test_metadata_round_trip_bumps_generation_by_two(ring):
    first, second = icy_block("Artist - Song"), icy_block("x" * 200)
    ring.set_metadata(first)
    assert ring.metadata() == (4, first)
    ring.set_metadata(second)
    ring.set_metadata(first)                         # shorter after longer: exact length
    assert ring.metadata() == (8, first)
    assert raw_u64(ring, 32) == 8


def test_metadata_accepts_the_largest_block(core, ring):
    block = b"\xff" + bytes(range(255)) * 16
    ring.set_metadata(block)
    assert ring.metadata() == (4, block) and len(block) == core.MAX_META_BLOCK


@pytest.mark.parametrize("block", [
    b"", b"\x01" + bytes(15), b"\x01" + bytes(17), b"\x02" + bytes(16), b"\x00" + bytes(16),
    bytes(5000),
])
def test_metadata_rejects_malformed_blocks(ring, block):
    with pytest.raises(ValueError):
        ring.set_metadata(block)
    assert ring.metadata()[0] == 2


def test_stream_header_round_trip(ring):
    pages = random.Random(4).randbytes(5000)
    ring.write(bytes(7000))
    ring.set_stream_header(pages, 6000)
    assert ring.stream_header() == (2, pages)
    assert os.pread(ring.fd, 5000, OFF_STREAM_HEADER) == pages
    assert raw_u64(ring, OFF_HDR_START) == 6000
    ring.set_stream_header(b"", 7000)
    assert ring.stream_header() == (4, b"")
    assert raw_u64(ring, OFF_HDR_START) == 7000


def test_stream_header_size_limit(core, ring):
    limit = HEADER_SIZE - OFF_STREAM_HEADER
    ring.set_stream_header(bytes(limit), 0)
    with pytest.raises(ValueError):
        ring.set_stream_header(bytes(limit + 1), 0)
    assert ring.stream_header() == (2, bytes(limit))


# -- start_point: position and header pages for a joining listener --------------------

def test_start_point_of_a_generic_ring_is_its_start_position(ring):
    for seq in (0, 100, 600):
        ring.add_sync_point(seq)
    ring.write(bytes(1000))
    assert ring.start_point(500) == (600, b"")
    assert ring.start_point(10**9) == (0, b"")


def test_start_point_before_any_header_set_is_the_stream_start(core, make_ring):
    ring = make_ring(SMALL_CAPACITY, core.FORMAT_OGG)
    ring.write(bytes(SMALL_CAPACITY - GUARD))
    assert ring.start_point(0) == (0, b"")       # the header pages are in the ring
    ring.write(b"x")                             # byte 0 may be overwritten now
    assert ring.start_point(0) == (ring.write_seq, b"")


def test_start_point_never_starts_before_the_link_of_its_header_set(core, make_ring):
    ring = make_ring(SMALL_CAPACITY, core.FORMAT_OGG)
    for seq in (100, 600, 2000, 2500):
        ring.add_sync_point(seq)
    ring.write(bytes(3000))
    ring.set_stream_header(b"second link", 2000)
    assert ring.start_position(10**9) == 100     # the raw sync table knows no links
    assert ring.start_point(10**9) == (2000, b"second link")
    assert ring.start_point(700) == (2500, b"second link")
    assert ring.start_point(0) == (2500, b"second link")   # newest, older than the burst


def test_start_point_falls_back_to_the_link_start_before_its_sync_points(core, make_ring):
    ring = make_ring(SMALL_CAPACITY, core.FORMAT_OGG)
    ring.add_sync_point(100)
    ring.write(bytes(3000))
    ring.set_stream_header(b"new link", 2000)   # its first data page's sync point comes next
    assert ring.start_point(500) == (2000, b"new link")


def test_start_point_skips_a_link_start_no_longer_safely_inside(core, make_ring):
    ring = make_ring(SMALL_CAPACITY, core.FORMAT_OGG)
    ring.write(bytes(100))
    ring.set_stream_header(b"pages", 50)
    ring.add_sync_point(50)
    ring.write(bytes(SMALL_CAPACITY))
    ring.add_sync_point(SMALL_CAPACITY)
    ring.write(bytes(10))
    assert ring.start_point(10**9) == (SMALL_CAPACITY, b"pages")


def test_start_point_with_an_empty_header_set_still_starts_in_its_link(core, make_ring):
    ring = make_ring(SMALL_CAPACITY, core.FORMAT_OGG)
    ring.add_sync_point(10)
    ring.write(bytes(1000))
    ring.set_stream_header(b"", 900)            # a link whose header set was skipped
    assert ring.start_point(10**9) == (900, b"")


def test_start_point_rejects_a_negative_burst(ring):
    with pytest.raises(ValueError):
        ring.start_point(-1)


# -- counters -------------------------------------------------------------------------

def test_listener_counts_are_summed_over_worker_slots(core, ring):
    ring.set_listener_count(0, 3)
    ring.set_listener_count(core.MAX_WORKERS - 1, 4)
    assert ring.listener_count() == 7
    ring.set_listener_count(0, 1)
    counts = ring.listener_counts()
    assert len(counts) == 64 and counts[0] == 1 and counts[63] == 4 and sum(counts) == 5
    assert raw_u64(ring, 2120 + 8 * 63) == 4


def test_bytes_sent_are_added_per_slot_and_summed(ring):
    ring.add_bytes_sent(1, 100)
    ring.add_bytes_sent(1, 100)
    ring.add_bytes_sent(2, 5)
    assert ring.bytes_sent() == 205
    assert raw_u64(ring, 2632 + 8) == 200


@pytest.mark.parametrize(("worker", "n"), [(-1, 1), (64, 1), (0, -1)])
def test_counters_reject_bad_slot_or_negative_value(ring, worker, n):
    with pytest.raises(ValueError):
        ring.set_listener_count(worker, n)
    with pytest.raises(ValueError):
        ring.add_bytes_sent(worker, n)


def test_a_seam_in_a_generic_ring_keeps_newcomers_after_it(ring):
    """A relay that reconnected to another stream marks a seam with an empty header set:
    a newcomer's burst never runs across it into the earlier stream."""
    ring.write(b"a" * 8192)
    ring.add_sync_point(0)
    ring.add_sync_point(4096)
    seam = ring.write_seq
    ring.set_stream_header(b"", seam)
    ring.write(b"b" * 1000)
    assert ring.start_point(64 * 1024) == (seam, b"")  # not 0 or 4096: the old stream
    ring.add_sync_point(seam + 500)
    assert ring.start_point(64 * 1024) == (seam + 500, b"")
