"""Ogg sources that break the header bounds (issue 9): the ingest keeps at most
MAX_LINK_STREAMS logical streams per link, MAX_HEADER_PAGES header pages per stream and
MAX_HEADER_SET bytes of header pages (the ring's header area). A link beyond one of them
has its header set skipped, said once per source in one log line; the source goes on.

Each test runs against one real fanout (two workers), asserts the source's answer, the
exact log line, what a listener joining gets, and that a Bystander is untouched.
"""
from __future__ import annotations

import struct
from pathlib import Path

import psutil
import pytest

from fanout.model.ogg import MAX_HEADER_SET, MAX_LINK_STREAMS
from tests.support.clients import Listener, Source
from tests.support.media import decode, needs_ffmpeg
from tests.support.server import icecast_xml, start_fanout, worker_of
from tests.support.splits import encode_tone
from tests.support.waiting import wait_for
from tests.support.logfiles import messages
from tests.unit.test_ogg import ogg_page

pytestmark = needs_ffmpeg

OGG = "application/ogg"
# The flood (issue 9): BOS pages with ever new serial numbers in one link (6 MB), which
# grew the worker by hundreds of MB before the bound; then many short links, each of
# them over the streams bound (their streams ended by EOS pages), each a skipped link.
FLOOD_BOS_PAGES = 200_000
FLOOD_LINKS = 2000
STREAMS_PER_FLOOD_LINK = MAX_LINK_STREAMS + 4
BATCH = 10_000  # pages per send
# What the worker holding the flooding source may grow by meanwhile (allocator noise).
FLOOD_RSS_GROWTH = 8 * 1024 * 1024
NO_HEADERS = "; listeners joining in that link get no header pages"


@pytest.fixture(scope="module")
def logdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ogg-logs")


@pytest.fixture(scope="module")
def server(logdir):
    srv = start_fanout(icecast_xml(extra=f"<paths><logdir>{logdir}</logdir></paths>"), logdir,
                       workers=2)
    yield srv
    assert srv.stop() == 0, srv.output()


@pytest.fixture(scope="module")
def vorbis() -> bytes:
    return encode_tone("-c:a", "libvorbis", "-f", "ogg", seconds=4)


def first_page(server, mount: str) -> tuple[int, int, int]:
    """(flags, granule, serial) of the first page a listener joining now is sent."""
    listener = Listener(server.host, server.port, mount).start()
    try:
        wait_for(lambda: len(listener.body) >= 27 or listener.closed.is_set(), 10, "a first page")
        assert listener.body[:4] == b"OggS", bytes(listener.body[:64])
        flags = listener.body[5]
        granule, serial = struct.unpack_from("<qI", listener.body, 6)
        return flags, granule, serial
    finally:
        listener.close()


def serial_of(ogg: bytes) -> int:
    return struct.unpack_from("<I", ogg, 14)[0]


def bos_pages(first_serial: int, count: int) -> bytes:
    return b"".join(ogg_page(serial, 0, b"bos", flags=2)
                    for serial in range(first_serial, first_serial + count))


def ended_link(first_serial: int) -> bytes:
    serials = range(first_serial, first_serial + STREAMS_PER_FLOOD_LINK)
    return bos_pages(first_serial, len(serials)) + b"".join(
        ogg_page(serial, 1, b"", flags=4) for serial in serials)


def test_a_bos_flood_costs_one_log_line_and_no_memory(server, logdir, bystander, vorbis):
    mount = "/flood.ogg"
    source = Source(server.host, server.port, mount, content_type=OGG)
    assert source.response == b"HTTP/1.0 200 OK\r\n\r\n"
    worker = wait_for(lambda: worker_of(server, source.sock.getsockname()[1]), 5, "its worker")
    line = (f"127.0.0.1: source on {mount}: Ogg header pages skipped (more than "
            f"{MAX_LINK_STREAMS} logical streams in one link){NO_HEADERS}")
    source.send(bos_pages(0, BATCH))
    wait_for(lambda: line in messages(logdir, "fanout.ingest"), 10, "the log line")
    before = psutil.Process(worker.pid).memory_info().rss
    for first in range(BATCH, FLOOD_BOS_PAGES, BATCH):
        source.send(bos_pages(first, BATCH))
    source.send(ogg_page(0, 1, b"audio", granule=1))  # the giant link's first data page
    for first in range(FLOOD_BOS_PAGES, FLOOD_BOS_PAGES + FLOOD_LINKS * STREAMS_PER_FLOOD_LINK,
                       STREAMS_PER_FLOOD_LINK):
        source.send(ended_link(first))
    source.send(vorbis)  # a well-formed link after the flood: joiners get its header pages
    wait_for(lambda: first_page(server, mount)[2] == serial_of(vorbis), 30, "the link after the flood")
    grown = psutil.Process(worker.pid).memory_info().rss - before
    assert grown < FLOOD_RSS_GROWTH, f"the worker grew by {grown} bytes during the flood"
    assert messages(logdir, "fanout.ingest").count(line) == 1
    source.send(vorbis[:100])  # still connected: the flood was skipped, not fatal
    source.close()


def test_a_header_set_larger_than_the_ring_area_is_skipped_and_the_source_goes_on(
        server, logdir, bystander, vorbis, tmp_path):
    mount = "/big-headers.ogg"
    big = (ogg_page(5, 0, bytes(4000), flags=2) + ogg_page(5, 1, bytes(60000))
           + ogg_page(5, 2, bytes(60000)) + ogg_page(5, 3, bytes(60000)))
    assert len(big) > MAX_HEADER_SET
    source = Source(server.host, server.port, mount, content_type=OGG)
    assert source.response == b"HTTP/1.0 200 OK\r\n\r\n"
    source.send(big + ogg_page(5, 4, b"audio", granule=960))
    line = (f"127.0.0.1: source on {mount}: Ogg header pages skipped (header pages over "
            f"{MAX_HEADER_SET} bytes){NO_HEADERS}")
    wait_for(lambda: line in messages(logdir, "fanout.ingest"), 10, "the log line")
    # A listener joining that link starts at its data, without anybody else's headers.
    wait_for(lambda: first_page(server, mount) == (0, 960, 5), 10, "a start at the link's data")
    source.send(vorbis)
    wait_for(lambda: first_page(server, mount)[2] == serial_of(vorbis), 10, "the next link")
    late = Listener(server.host, server.port, mount).start()
    wait_for(lambda: len(late.body) >= 4096, 10, "the late listener's audio")
    source.close()
    assert late.closed.wait(10), "the listener was not closed after the source left"
    assert decode(bytes(late.body), tmp_path / "late.ogg").errors == ""
    assert messages(logdir, "fanout.ingest").count(line) == 1
