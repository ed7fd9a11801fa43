"""Listeners that misbehave cost only themselves, and a full node still says it is healthy.

- A listener that never reads is dropped once about queue-size plus a fixed kernel send
  buffer went unread (not the ~4 MB autotuning allows); `<so-sndbuf>` sets that buffer.
- At the `<limits><clients>` limit, /health is answered 200 while listeners and sources
  still get Icecast's 403; a flood of silent connections cannot hold more than
  OVER_LIMIT_READS of them open.
- Listeners waiting for an on-demand upstream (MAX_PENDING) or for a url auth server
  (listener_auth.MAX_PENDING) are bounded per worker and mount.

Each test asserts the exact answer and log line, and that a Bystander is untouched.
"""
from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from fanout.worker import listener_auth
from fanout.worker.state import OVER_LIMIT_READS
from fanout.worker.listeners import MAX_PENDING, listener_sndbuf
from tests.support.admin import get
from tests.support.bystander import Bystander
from tests.support.clients import Listener, Source, read_all
from tests.support.server import LISTEN_LINE, icecast_xml, start_fanout
from tests.support.waiting import wait_for
from tests.support.clients import serving, status_and_body
from tests.support.logfiles import messages

QUEUE_SIZE = 512000  # Icecast's default <queue-size>
SO_SNDBUF = 65536  # the <so-sndbuf> of the second listen socket
# ip - user [date] "request" status bytes "referer" "user agent" duration
ACCESS_LINE = re.compile(r'^\S+ - \S+ \[[^]]+\] "([^"]*)" (\d{3}) (\d+) "[^"]*" "([^"]*)" \d+$')
REFUSED_BY_LIMIT = b"Icecast connection limit reached"


def access_lines(logdir: Path, user_agent: str) -> list[re.Match]:
    path = logdir / "access.log"
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    found = [ACCESS_LINE.match(line) for line in lines]
    return [m for m in found if m is not None and m.group(4) == user_agent]


def server_send_buffer(server_port: int, client_port: int) -> int | None:
    """The kernel send buffer (`ss` skmem tb) of the server's side of a connection."""
    out = subprocess.run(["ss", "-tmnH", "state", "established",
                          f"( sport = :{server_port} and dport = :{client_port} )"],
                         capture_output=True, text=True, check=True).stdout
    match = re.search(r"\btb(\d+)", out)
    return int(match.group(1)) if match else None


def deaf_listener(host: str, port: int, mount: str, user_agent: str) -> socket.socket:
    """A listener with a small receive buffer that sends its request and never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, port))
    sock.sendall(f"GET {mount} HTTP/1.0\r\nUser-Agent: {user_agent}\r\n\r\n".encode())
    return sock


@pytest.fixture
def untouched(request):
    """Yield the module's Bystander; afterwards it and its server must be fine."""
    server, bystander = request.getfixturevalue("server"), request.getfixturevalue("everyone_else")
    yield bystander
    bystander.assert_untouched()
    assert server.proc.poll() is None, server.output()
    assert "Traceback" not in server.output(), server.output()


# -- listeners that do not read (2 workers, two listen sockets) -------------------------------

class TestDeafListeners:
    @pytest.fixture(scope="class")
    def logdir(self, tmp_path_factory) -> Path:
        return tmp_path_factory.mktemp("deaf-logs")

    @pytest.fixture(scope="class")
    def server(self, logdir):
        second = (f"<listen-socket><port>0</port><bind-address>127.0.0.1</bind-address>"
                  f"<so-sndbuf>{SO_SNDBUF}</so-sndbuf></listen-socket>")
        srv = start_fanout(icecast_xml(extra=f"{second}<paths><logdir>{logdir}</logdir></paths>",
                                       limits=f"<queue-size>{QUEUE_SIZE}</queue-size>"),
                           logdir, workers=2)
        srv.second_port = int(LISTEN_LINE.findall(srv.output())[1][1])
        yield srv
        assert srv.stop() == 0, srv.output()

    @pytest.fixture(scope="class")
    def everyone_else(self, server):
        with Bystander(server) as bystander:
            yield bystander

    def test_a_listener_that_never_reads_is_dropped_after_queue_size_and_its_send_buffer(
            self, server, logdir, untouched):
        source = Source(server.host, server.port, "/deaf")
        assert source.accepted, source.response
        source.send_pattern(32 * 1024)
        wait_for(lambda: serving(server, "/deaf"), 5, "the mount to serve")
        deaf = deaf_listener(server.host, server.port, "/deaf", "deaf-listener")
        client_port = deaf.getsockname()[1]
        # The server fixed its send buffer (Linux reports twice the value asked for).
        expected = 2 * listener_sndbuf(0, QUEUE_SIZE)
        assert expected == 256000
        wait_for(lambda: server_send_buffer(server.port, client_port) == expected, 5,
                 f"a {expected}-byte send buffer on the deaf listener's socket")
        receive_buffer = deaf.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        # The most the kernel can hold for it; once the source is that far plus queue-size
        # ahead of where it started, it is over its lag limit at the next pass.
        kernel = expected + receive_buffer
        source.send_pattern(QUEUE_SIZE + kernel + 64 * 1024, chunk=16384, pace=0.002)
        dropped = wait_for(lambda: [m for m in messages(logdir, "fanout.listener")
                                    if m.startswith("127.0.0.1: listener on /deaf fell")], 10,
                           "the deaf listener to be dropped")
        line = wait_for(lambda: access_lines(logdir, "deaf-listener"), 5, "its access line")[0]
        sent = int(line.group(3))
        assert (line.group(1), line.group(2)) == ("GET /deaf HTTP/1.0", "200")
        assert 0 < sent <= kernel, f"{sent} bytes went into its kernel buffers"
        assert dropped == [f"127.0.0.1: listener on /deaf fell too far behind (over {QUEUE_SIZE} "
                           f"bytes); dropped after {sent} bytes"]
        deaf.close()
        source.close()

    def test_so_sndbuf_sets_the_send_buffer_of_listeners_on_its_socket(self, server, untouched):
        listener = Listener(server.host, server.second_port, "/bystander").start()
        assert listener.head.startswith(b"HTTP/1.0 200"), listener.head
        wait_for(lambda: server_send_buffer(server.second_port, listener.local_port)
                 == 2 * SO_SNDBUF, 5, f"a {2 * SO_SNDBUF}-byte send buffer")
        listener.close()


# -- a full node (1 worker, <clients> reached by the Bystander) ---------------------------------

class TestFullNode:
    CLIENTS = 5  # the Bystander's source and 4 listeners

    @pytest.fixture(scope="class")
    def logdir(self, tmp_path_factory) -> Path:
        return tmp_path_factory.mktemp("full-logs")

    @pytest.fixture(scope="class")
    def server(self, logdir):
        config = icecast_xml(extra=f"<paths><logdir>{logdir}</logdir></paths>").replace(
            "<clients>500</clients>", f"<clients>{self.CLIENTS}</clients>")
        srv = start_fanout(config, logdir, workers=1)
        yield srv
        assert srv.stop() == 0, srv.output()

    @pytest.fixture(scope="class")
    def everyone_else(self, server):
        with Bystander(server) as bystander:
            yield bystander

    def test_health_is_200_at_the_clients_limit_while_listeners_and_sources_get_403(
            self, server, logdir, untouched):
        health = get(server, "/health", authorization=None)
        assert health.status == 200
        body = json.loads(health.body)
        assert (body["status"], body["mounts"]) == ("ok", 1)
        assert status_and_body(raw_get(server, "/bystander")) == (
            b"HTTP/1.0 403 Forbidden", REFUSED_BY_LIMIT)
        source = Source(server.host, server.port, "/more")
        assert status_and_body(source.response + read_all(source.sock)) == (
            b"HTTP/1.0 403 Forbidden", REFUSED_BY_LIMIT)
        line = f"127.0.0.1: refused, {self.CLIENTS} clients connected (limit)"
        wait_for(lambda: messages(logdir, "fanout.client").count(line) == 2, 5, "two refusals")
        found = wait_for(lambda: access_lines(logdir, "fanout-admin-test"), 5, "/health's line")
        assert [(m.group(1), m.group(2)) for m in found] == [("GET /health HTTP/1.0", "200")]

    def test_at_the_limit_silent_connections_hold_at_most_over_limit_reads(self, server, untouched):
        silent = [socket.create_connection((server.host, server.port), timeout=10)
                  for _ in range(OVER_LIMIT_READS)]
        # Every slot is taken by a connection that says nothing: this one is not read.
        health = raw_health(server)
        assert status_and_body(health) == (b"HTTP/1.0 403 Forbidden", REFUSED_BY_LIMIT)
        for sock in silent:  # each gets the 403 once its short wait for a head is over
            assert status_and_body(read_all(sock)) == (b"HTTP/1.0 403 Forbidden", REFUSED_BY_LIMIT)
            sock.close()
        assert status_and_body(raw_health(server))[0] == b"HTTP/1.0 200 OK"


def raw_health(server) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        return read_all(sock)


# -- listeners waiting on someone else (1 worker: the bounds are per worker) --------------------

class HoldingPeer:
    """A hostile upstream / auth server: accepts, then trickles a response head that never
    ends (one byte a second, under any read timeout), so whoever asked keeps waiting."""

    HEAD = b"HTTP/1.0 200 OK\r\n" + b"X-Slow: yes\r\n" * 64

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.stopping = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(conn)
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        for byte in self.HEAD:
            if self.stopping.wait(1.0):  # pacing the hostile peer, not synchronisation
                return
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                return

    def close(self) -> None:
        self.stopping.set()
        self.listener.close()
        for conn in self.accepted:
            conn.close()


class TestWaitingListeners:
    @pytest.fixture(scope="class")
    def peer(self):
        peer = HoldingPeer()
        yield peer
        peer.close()

    @pytest.fixture(scope="class")
    def server(self, peer, tmp_path_factory):
        auth = (f"<mount><mount-name>/guarded</mount-name><authentication type='url'>"
                f"<option name='listener_add' value='http://127.0.0.1:{peer.port}/add'/>"
                f"<option name='timeout' value='60'/></authentication></mount>")
        relay = (f"<relay><server>127.0.0.1</server><port>{peer.port}</port><mount>/up</mount>"
                 f"<local-mount>/on-demand</local-mount><on-demand>1</on-demand></relay>")
        srv = start_fanout(icecast_xml(limits="<clients>5000</clients><connections-per-ip>5000"
                                              "</connections-per-ip>", mounts=auth, extra=relay)
                           .replace("<clients>500</clients>", ""),
                           tmp_path_factory.mktemp("waiting"), workers=1)
        yield srv
        assert srv.stop() == 0, srv.output()

    @pytest.fixture(scope="class")
    def everyone_else(self, server):
        with Bystander(server) as bystander:
            yield bystander

    def test_listeners_waiting_for_an_on_demand_upstream_are_bounded(self, server, peer, untouched):
        waiting = open_waiting(server, "/on-demand", MAX_PENDING)
        try:
            wait_for(lambda: mount_listeners(server, "/on-demand") == MAX_PENDING, 8,
                     f"{MAX_PENDING} listeners waiting for the upstream")
            answer = raw_get(server, "/on-demand")
            assert status_and_body(answer) == (
                b"HTTP/1.0 404 File Not Found",
                b"<html><head><title>Error 404</title></head><body><b>404 - Mount unavailable "
                b"(1000 listeners already wait for its upstream)</b></body></html>\r\n")
            assert mount_listeners(server, "/on-demand") == MAX_PENDING  # still waiting
            line = "127.0.0.1: Mount unavailable (1000 listeners already wait for its upstream) (404)"
            wait_for(lambda: line in server.output(), 5, "the log line")
            assert server.output().count(line) == 1
        finally:
            for sock in waiting:
                sock.close()

    def test_listeners_waiting_for_a_url_auth_server_are_bounded(self, server, peer, untouched):
        before = len(peer.accepted)
        waiting = open_waiting(server, "/guarded", listener_auth.MAX_PENDING)
        try:
            wait_for(lambda: len(peer.accepted) - before == listener_auth.MAX_PENDING, 8,
                     f"{listener_auth.MAX_PENDING} listeners waiting for the auth server")
            answer = raw_get(server, "/guarded")
            assert status_and_body(answer) == (b"HTTP/1.0 403 Forbidden",
                                               b"busy, please try again later")
            wait_for(lambda: "127.0.0.1: busy, please try again later (403)" in server.output(),
                     5, "the log line")
        finally:
            for sock in waiting:
                sock.close()


def open_waiting(server, mount: str, count: int) -> list[socket.socket]:
    """`count` listeners of `mount` that sent their request and wait for an answer."""
    socks = []
    for _ in range(count):
        sock = socket.create_connection((server.host, server.port), timeout=10)
        sock.sendall(f"GET {mount} HTTP/1.0\r\n\r\n".encode())
        socks.append(sock)
    return socks


def raw_get(server, mount: str) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(f"GET {mount} HTTP/1.0\r\n\r\n".encode())
        return read_all(sock)


def mount_listeners(server, mount: str) -> int | None:
    """The listeners /metrics counts on `mount` (waiting ones included)."""
    metrics = get(server, "/metrics", authorization=None).body.decode()
    match = re.search(rf'^fanout_mount_listeners{{mount="{re.escape(mount)}"}} (\d+)$', metrics,
                      re.MULTILINE)
    return int(match.group(1)) if match else None
