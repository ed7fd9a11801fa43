"""Threat: one address taking a whole server (DESIGN invariant 6: per-IP connections bounded).

`<limits><connections-per-ip>` bounds the connections one client address holds at once,
summed over every worker (the count lives in the shared counters). The next one is
answered 403 (as Icecast's other limits: a player shows "full" instead of retrying at
once) with one log line per refusal, bounded per cause by the log. The address is the
real client's: behind a PROXY-protocol balancer the balancer's own address is not
limited, each client behind it is. The attacker here connects from 127.0.0.2 (loopback,
another address); the bystander streams from 127.0.0.1.
"""
from __future__ import annotations

import re
import socket
import threading
import time

import pytest

from fanout.logs import CAUSE_WINDOW, MAX_LINES_PER_CAUSE
from tests.support.bystander import Bystander
from tests.support.clients import FillSource, read_head
from tests.support.server import icecast_xml, start_fanout
from tests.support.waiting import wait_for

LIMIT = 8  # the bystander holds 5 connections from 127.0.0.1 (a source, 4 listeners)
ATTACKER = "127.0.0.2"
TIMEOUT = 10
REFUSAL = f"too many connections from this address ({LIMIT}, <connections-per-ip>)"
PROXY_LINE = re.compile(r"listening on http://127\.0\.0\.1:(\d+)/")


class HeldListener:
    """A listener of /held from `source`, reading in a thread (so it is never too slow)."""

    def __init__(self, port: int, source: str, prefix: bytes = b"") -> None:
        self.sock = socket.socket()
        self.sock.settimeout(TIMEOUT)
        self.sock.bind((source, 0))
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(prefix + b"GET /held HTTP/1.0\r\n\r\n")
        self.head = read_head(self.sock)[0]
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            while self.sock.recv(65536):
                pass
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def answer_to(port: int, source: str, prefix: bytes = b"") -> bytes:
    """Everything the server answers a listener's request from `source` (until it closes)."""
    with socket.socket() as sock:
        sock.settimeout(TIMEOUT)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        sock.sendall(prefix + b"GET /held HTTP/1.0\r\n\r\n")
        head, rest = read_head(sock)
        if not head.startswith(b"HTTP/1.0 403"):
            return head
        data = head + rest
        while chunk := sock.recv(4096):
            data += chunk
        return data


def proxy_v1(source: str) -> bytes:
    return f"PROXY TCP4 {source} 127.0.0.1 40000 8000\r\n".encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_fanout(icecast_xml(
        limits=f"<connections-per-ip>{LIMIT}</connections-per-ip>",
        extra="<listen-socket><port>0</port><bind-address>127.0.0.1</bind-address>"
              "<proxy-protocol>1</proxy-protocol></listen-socket>"),
        tmp_path_factory.mktemp("per-ip"), workers=2)
    feed = FillSource(srv, "/held")
    yield srv
    feed.close()
    assert srv.stop() == 0, srv.output()


@pytest.fixture(scope="module")
def bystander(server):
    with Bystander(server) as watcher:
        yield watcher


def proxy_port(server) -> int:
    return int(PROXY_LINE.findall(server.output())[1])


def assert_refused(answer: bytes) -> None:
    assert answer.startswith(b"HTTP/1.0 403 Forbidden\r\n"), answer
    assert b"Content-Type: text/plain" in answer
    assert answer.endswith(b"\r\n\r\n" + REFUSAL.encode())


def test_one_address_past_its_limit_is_refused_403_and_others_go_on(server, bystander):
    held = [HeldListener(server.port, ATTACKER) for _ in range(LIMIT)]
    try:
        assert all(h.head.startswith(b"HTTP/1.0 200 OK\r\n") for h in held)
        logged = server.output().count(f"{ATTACKER}: {REFUSAL} (403)")
        assert_refused(answer_to(server.port, ATTACKER))
        wait_for(lambda: server.output().count(f"{ATTACKER}: {REFUSAL} (403)") == logged + 1,
                 TIMEOUT, "one log line for the refusal")
        # Another address is not affected by the attacker's count.
        assert answer_to(server.port, "127.0.0.3").startswith(b"HTTP/1.0 200 OK\r\n")
        bystander.assert_untouched()
        held.pop().close()  # a connection that ends gives its place back
        wait_for(lambda: answer_to(server.port, ATTACKER).startswith(b"HTTP/1.0 200 OK\r\n"),
                 TIMEOUT, "the freed place to be taken")
    finally:
        for h in held:
            h.close()
    bystander.assert_untouched()
    assert server.proc.poll() is None


def test_a_flood_of_refusals_is_logged_within_the_bound(server, bystander):
    held = [HeldListener(server.port, ATTACKER) for _ in range(LIMIT)]
    message = f"{ATTACKER}: {REFUSAL} (403)"
    before = server.output().count(message)
    started = time.monotonic()
    try:
        for _ in range(200):
            assert_refused(answer_to(server.port, ATTACKER))
    finally:
        for h in held:
            h.close()
    windows = (time.monotonic() - started) / CAUSE_WINDOW + 1
    logged = server.output().count(message) - before
    # Each worker writes at most MAX_LINES_PER_CAUSE lines of one cause per window.
    assert 0 < logged <= 2 * MAX_LINES_PER_CAUSE * (windows + 1) < 200
    bystander.assert_untouched()


def test_behind_a_balancer_each_client_address_is_limited_not_the_balancer(server, bystander):
    port = proxy_port(server)
    held = [HeldListener(port, "127.0.0.1", proxy_v1("203.0.113.9")) for _ in range(LIMIT)]
    try:
        assert_refused(answer_to(port, "127.0.0.1", proxy_v1("203.0.113.9")))
        # The balancer (127.0.0.1, also the bystander's address) carries other clients on.
        assert answer_to(port, "127.0.0.1", proxy_v1("203.0.113.10")).startswith(b"HTTP/1.0 200 OK")
    finally:
        for h in held:
            h.close()
    bystander.assert_untouched()
