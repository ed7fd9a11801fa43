"""Sources and listeners through a real fanout with two workers, over real sockets.

The tests share one server, each streaming on a mount of its own; the test that kills a
worker has a server of its own.
"""
from __future__ import annotations

import socket

import pytest

from tests.support.clients import Listener, Source, locate_in_pattern, pattern, split_icy
from tests.support.server import icecast_xml, start_fanout, worker_of
from tests.support.waiting import wait_for

# Enough listeners that both workers get some (the kernel picks the accepting worker).
MAX_LISTENERS_TRIED = 40


def started(folder):
    srv = start_fanout(icecast_xml(), folder, workers=2)
    yield srv
    assert srv.stop() == 0, srv.output()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from started(tmp_path_factory.mktemp("streaming"))


@pytest.fixture
def own_server(tmp_path):
    """A server for this test alone (it kills one of its workers)."""
    yield from started(tmp_path)


@pytest.fixture
def mount(request) -> str:
    """The test's own mount on the shared server."""
    return f"/pattern-{request.node.name}"


def listeners_on_both_workers(server, mount: str, icy: bool = False) -> list[Listener]:
    """Open listeners until at least one sits on each of the two workers."""
    listeners: list[Listener] = []
    holders: set[int] = set()
    while len(holders) < 2:
        assert len(listeners) < MAX_LISTENERS_TRIED, "all listeners landed on one worker"
        listener = Listener(server.host, server.port, mount, icy=icy).start()
        listeners.append(listener)
        worker = wait_for(lambda: worker_of(server, listener.local_port), 5, "the listener's worker")
        holders.add(worker.pid)
    return listeners


def wait_source_up(server, mount: str) -> None:
    def mount_serves() -> bool:
        probe = Listener(server.host, server.port, mount).start()
        ok = probe.head.startswith(b"HTTP/1.0 200")
        probe.close()
        return ok

    wait_for(mount_serves, 5, f"{mount} to serve")


def test_pattern_arrives_exactly_at_listeners_on_every_worker(server, mount):
    source = Source(server.host, server.port, mount)
    assert source.accepted, source.response
    source.send_pattern(64 * 1024)
    wait_source_up(server, mount)
    listeners = listeners_on_both_workers(server, mount)
    source.send_pattern(2 * 1024 * 1024, chunk=16384, pace=0.005)
    total = source.sent
    source.close()
    for listener in listeners:
        assert listener.closed.wait(20), "the listener was not closed after the source left"
        assert listener.head.startswith(b"HTTP/1.0 200 OK\r\n")
        start = locate_in_pattern(bytes(listener.body))
        assert start + len(listener.body) == total, "the stream's tail is missing"


def test_icy_blocks_interleave_exactly_and_audio_is_intact(server, mount):
    source = Source(server.host, server.port, mount)
    source.send_pattern(32 * 1024)
    wait_source_up(server, mount)
    listeners = listeners_on_both_workers(server, mount, icy=True)
    source.send_pattern(1024 * 1024, chunk=8192, pace=0.003)
    total = source.sent
    source.close()
    for listener in listeners:
        assert listener.closed.wait(20)
        assert listener.header("icy-metaint") == "16000"
        audio, blocks = split_icy(bytes(listener.body), 16000)
        start = locate_in_pattern(audio)
        assert start + len(audio) == total
        assert blocks[0] == b"\x01StreamTitle='';\x00", "the first block is the full metadata"
        assert all(block == b"\x00" for block in blocks[1:])


def test_listener_without_icy_request_gets_no_metaint(server, mount):
    source = Source(server.host, server.port, mount)
    source.send_pattern(32 * 1024)
    wait_source_up(server, mount)
    listener = Listener(server.host, server.port, mount).start()
    assert listener.header("icy-metaint") is None
    source.send_pattern(64 * 1024)
    source.close()
    assert listener.closed.wait(20)
    locate_in_pattern(bytes(listener.body))


def test_listener_that_stops_reading_is_dropped_and_others_keep_playing(server, mount):
    source = Source(server.host, server.port, mount)
    source.send_pattern(32 * 1024)
    wait_source_up(server, mount)
    mark = len(server.output())  # what the shared server said before: not about this test
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect((server.host, server.port))
    stalled.sendall(f"GET {mount} HTTP/1.0\r\n\r\n".encode())  # and never reads again
    healthy = Listener(server.host, server.port, mount).start()
    # Keep streaming until the server gives up on the silent listener: queue-size (500 KB)
    # plus whatever the kernel buffers hold.
    while "fell too far behind" not in server.output()[mark:]:
        assert source.sent < 64 * 1024 * 1024, "the silent listener was never dropped"
        source.send_pattern(64 * 1024, chunk=16384, pace=0.005)
    source.send_pattern(64 * 1024, chunk=16384, pace=0.005)
    total = source.sent
    source.close()
    assert healthy.closed.wait(20)
    start = locate_in_pattern(bytes(healthy.body))
    assert start + len(healthy.body) == total
    stalled.close()


def test_killing_one_worker_leaves_the_other_workers_listeners_playing(own_server):
    import signal

    server, mount = own_server, "/pattern"
    source = Source(server.host, server.port, mount)
    source.send_pattern(32 * 1024)
    wait_source_up(server, mount)
    source_worker = wait_for(lambda: worker_of(server, source.sock.getsockname()[1]), 5, "source worker")
    listeners = listeners_on_both_workers(server, mount)
    doomed = [l for l in listeners if worker_of(server, l.local_port).pid != source_worker.pid]
    survivors = [l for l in listeners if l not in doomed]
    victim = worker_of(server, doomed[0].local_port)
    victim.send_signal(signal.SIGKILL)
    for listener in doomed:
        assert listener.closed.wait(10), "the killed worker's listener stayed open"
    source.send_pattern(512 * 1024, chunk=8192, pace=0.003)
    total = source.sent
    source.close()
    for listener in survivors:
        assert listener.closed.wait(20)
        start = locate_in_pattern(bytes(listener.body))
        assert start + len(listener.body) == total
    server.wait_workers(2)  # replaced
    wait_for(lambda: "died with status" in server.output(), 5, "the death to be logged")


def test_a_late_listener_starts_at_most_burst_size_back(server, mount):
    source = Source(server.host, server.port, mount)
    source.send_pattern(16 * 1024)
    wait_source_up(server, mount)
    probe = Listener(server.host, server.port, mount).start()
    source.send_pattern(200 * 1024, chunk=4096, pace=0.001)
    ingested = source.sent
    wait_for(lambda: len(probe.body) > 16 and locate_in_pattern(bytes(probe.body)) + len(probe.body)
             >= ingested, 10, "everything sent to be in the ring")
    late = Listener(server.host, server.port, mount).start()
    wait_for(lambda: len(late.body) >= 16, 5, "the burst")
    source.send_pattern(10 * 1024)
    total = source.sent
    source.close()
    assert late.closed.wait(20)
    start = locate_in_pattern(bytes(late.body))
    assert start + len(late.body) == total
    assert 0 < ingested - start <= 65536, "the burst reaches further back than burst-size"


def test_pattern_helper_catches_a_corrupted_byte():
    data = bytearray(pattern(1000, 4096))
    data[2000] ^= 0xFF
    with pytest.raises(AssertionError, match="diverges"):
        locate_in_pattern(bytes(data))
