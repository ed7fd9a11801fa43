"""Event-driven pumps (issue 13, fanout/worker/pump.py): an idle mount costs nothing.

Passes are counted, not seconds: /metrics' fanout_pump_passes_total is read around a
window that ends on a condition (the server timing out a client that sends no request
head: header-timeout), during which a fixed 10 ms tick would have made about a hundred
passes per second over the idle mount's listener.
"""
from __future__ import annotations

import re
import socket
import threading
import time

import pytest

from tests.support.admin import get
from tests.support.clients import Feeding, Listener, Source, locate_in_pattern
from tests.support.server import icecast_xml, start_fanout
from tests.support.waiting import wait_for

# The window's length: a silent client is closed after this many seconds.
HEADER_TIMEOUT = 1
PASSES = re.compile(rb"^fanout_pump_passes_total (\d+)$", re.M)


def pump_passes(server) -> int:
    answer = get(server, "/metrics")
    match = PASSES.search(answer.body)
    assert match is not None, answer.body[:400]
    return int(match.group(1))


def silent_client_times_out(server) -> None:
    """The window: a client that connects and sends nothing, until the server closes it."""
    sock = socket.create_connection((server.host, server.port), timeout=10)
    closed = threading.Event()

    def read_to_end() -> None:
        try:
            while sock.recv(4096):
                pass
        except OSError:
            pass
        closed.set()

    threading.Thread(target=read_to_end, daemon=True).start()
    try:
        wait_for(closed.is_set, HEADER_TIMEOUT + 10, "the server to time the silent client out")
    finally:
        sock.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    config = icecast_xml().replace("<header-timeout>3</header-timeout>",
                                   f"<header-timeout>{HEADER_TIMEOUT}</header-timeout>")
    config = config.replace("<source-timeout>3</source-timeout>", "<source-timeout>60</source-timeout>")
    server = start_fanout(config, tmp_path_factory.mktemp("idle"))
    yield server
    assert server.stop() == 0


def test_an_idle_mounts_pump_makes_no_pass_and_wakes_on_the_next_byte(server):
    source = Source(server.host, server.port, "/idle")
    assert source.accepted, source.response
    try:
        source.send_pattern(32 * 1024)
        listener = Listener(server.host, server.port, "/idle").start()
        wait_for(lambda: len(listener.body) >= 32 * 1024, 10, "the burst at the listener")
        silent_client_times_out(server)  # whatever pass was under way is counted by now
        before, received = pump_passes(server), len(listener.body)
        silent_client_times_out(server)
        assert pump_passes(server) == before, "a pump ran while its mount was idle"
        assert len(listener.body) == received and not listener.closed.is_set()
        source.send_pattern(32 * 1024)  # the next bytes ring the doorbell
        wait_for(lambda: len(listener.body) >= received + 32 * 1024, 10, "the new bytes")
        locate_in_pattern(bytes(listener.body))
        assert pump_passes(server) > before
        listener.close()
    finally:
        source.close()


def test_a_server_without_listeners_makes_no_pass(server):
    source = Source(server.host, server.port, "/nobody")
    assert source.accepted, source.response
    try:
        source.send_pattern(64 * 1024)
        silent_client_times_out(server)  # another test's mount may have ended just before
        before = pump_passes(server)
        source.send_pattern(64 * 1024)
        silent_client_times_out(server)
        assert pump_passes(server) == before
    finally:
        source.close()


# A slow stream: 512 bytes every 20 ms is 8 KiB (a wake batch) per 320 ms, so its passes are
# paced by the latency deadline (MAX_DELAY 150 ms), not by the ring.
SLOW_CHUNK, SLOW_PACE = 512, 0.02
ARRIVALS = 100
WORKERS = 2


def test_arrivals_get_a_pass_of_their_own_not_a_pass_over_everyone(server):
    """Listeners arriving at a streaming mount: each newcomer is served by a pass over the
    newcomers (serve_fresh); the listeners already there keep their deadline. Before the
    fix, every arrival also re-sent to every listener: 10,000 real-time listeners arriving
    at 250/s then failed to get their heads in time. Counted: at most one pass per arrival
    plus what the deadlines and wake batches allow over the window, where the old
    behaviour makes two per arrival."""
    source = Source(server.host, server.port, "/crowd")
    assert source.accepted, source.response
    feeding = Feeding(lambda: source.send_pattern(SLOW_CHUNK), SLOW_PACE)
    crowd: list[Listener] = []
    try:
        first = Listener(server.host, server.port, "/crowd").start()
        crowd.append(first)
        wait_for(lambda: len(first.body) >= 16 * 1024, 10, "the stream at the first listener")
        before, started = pump_passes(server), time.monotonic()
        for _ in range(ARRIVALS):  # one between two writes: the ring moved for each
            mark = source.sent
            wait_for(lambda: source.sent > mark, 10, "the source's next write")
            crowd.append(Listener(server.host, server.port, "/crowd").start())
        wait_for(lambda: all(listener.body for listener in crowd), 10, "bytes at every newcomer")
        passes, elapsed = pump_passes(server) - before, time.monotonic() - started
        streamed = elapsed * SLOW_CHUNK / SLOW_PACE
        allowance = WORKERS * (elapsed / 0.15 + streamed / (8 * 1024) + 2)
        assert passes <= ARRIVALS + allowance, (passes, elapsed)
        assert not any(listener.closed.is_set() for listener in crowd)
    finally:
        feeding.close()
        for listener in crowd:
            listener.close()
        source.close()
