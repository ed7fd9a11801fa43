"""One client connection: enforce the client limit, read the head, dispatch, answer errors.

Errors are mapped to HTTP here and nowhere else: a `ProtocolError` becomes Icecast's error
response plus one log line without a traceback; anything else is an internal error, logged
with its traceback and answered 500 when nothing was sent yet.

A connection on a shoutcast-compat listen socket is not HTTP: it is a Shoutcast source
(`shoutcast.py`), its errors close it without a word, and it is never answered 500.

At the `<limits><clients>` limit Icecast answers 403 before reading anything. We read the
head first (for at most OVER_LIMIT_HEAD_WAIT, and for at most OVER_LIMIT_READS
connections at once per worker; beyond that the 403 goes out unread as before) so that
`GET /health` is still answered: a full node serves its listeners well, and a load
balancer must not take it out. Only /health is: it is cheap and has no side effect,
while anything else (a listener, a source, admin, status) would bypass the limit.
"""
from __future__ import annotations

import logging
import re
import time
from typing import Any, Callable

import gevent
from gevent.lock import BoundedSemaphore

from fanout import logs, supervised
from fanout.protocol.access_log import AccessRecord, format_access_line
from fanout.protocol.errors import ProtocolError
from fanout.protocol.http import BadHead, HeadParser, Request, is_source_method
from fanout.protocol.responses import render_error
from fanout.worker import stats

log = logging.getLogger("fanout.client")

# Bytes read per recv while the head arrives.
HEAD_READ_SIZE = 4096
# Bytes of a first send searched for status lines (a source's 100 Continue precedes its 200).
STATUS_SCAN = 512
_STATUS = re.compile(rb"HTTP/\d\.\d (\d{3}) ")
# At the clients limit, seconds to wait for a head (a health check sends its request with
# the connection; anything slower gets Icecast's 403).
OVER_LIMIT_HEAD_WAIT = 2.0
# At the clients limit, connections one worker reads a head from at once: what a flood
# can hold besides the limit is this many fds for OVER_LIMIT_HEAD_WAIT each.
OVER_LIMIT_READS = 16
# Paths answered even at the clients limit (see the module doc).
OVER_LIMIT_PATHS = frozenset({"/health"})
LIMIT_REACHED = "Icecast connection limit reached"
_over_limit_reads = BoundedSemaphore(OVER_LIMIT_READS)  # one worker per process


class HeaderTimeout(Exception):
    """The head did not arrive within <header-timeout>."""


class Connection:
    """A client socket with what we know of it, for handlers and log lines."""

    __slots__ = ("sock", "ip", "port", "server", "id", "answered", "kept", "request", "status",
                 "sent", "started")

    def __init__(self, sock: Any, address: tuple[str, int], server: Any, client_id: int) -> None:
        self.sock = sock
        self.ip, self.port = address[0], address[1]
        self.server = server
        self.id = client_id
        self.answered = False
        self.kept = False
        self.request: Request | None = None  # once the head is parsed
        self.status = 0  # of the response sent, for the access log
        self.sent = 0  # bytes sent through send()
        self.started = time.time()

    def send(self, data: bytes) -> None:
        if self.status in (0, 100):
            statuses = _STATUS.findall(data[:STATUS_SCAN])
            self.status = int(statuses[-1]) if statuses else self.status
        self.answered = True
        self.sock.sendall(data)
        self.sent += len(data)

    def keep_open(self) -> None:
        """The socket now belongs to the pump; don't close it when the handler returns."""
        self.kept = True
        self.server.keep(self.sock)


def serve_connection(worker: Any, server: Any, sock: Any, address: tuple[str, int]) -> None:
    conn = Connection(sock, address, server, worker.next_client_id())
    if worker.counters.total("clients") >= worker.cfg.limits.clients:
        serve_over_limit(worker, conn)
        return
    worker.counters.add(worker.index, "clients", 1)
    worker.counters.add(worker.index, "accepted", 1)
    try:
        _serve(worker, conn, lambda: serve_client(worker, conn))
    finally:
        if not conn.kept:
            worker.counters.add(worker.index, "clients", -1)
            log_access(conn, conn.status, conn.sent)


def serve_over_limit(worker: Any, conn: Connection) -> None:
    """At the clients limit: answer /health, refuse anything else with Icecast's 403."""
    request = None
    if not conn.server.spec.shoutcast_compat and _over_limit_reads.acquire(blocking=False):
        try:
            request = read_over_limit(worker, conn)
        finally:
            _over_limit_reads.release()
    if request is not None and request.method in ("GET", "HEAD") and request.path in OVER_LIMIT_PATHS:
        conn.request = request
        _serve(worker, conn, lambda: route(request)(worker, conn, request, b""))
        log_access(conn, conn.status, conn.sent)
        return
    worker.counters.add(worker.index, "refused", 1)
    _answer_error(worker, conn, ProtocolError(LIMIT_REACHED, 403))
    log.warning("%s: refused, %d clients connected (limit)", conn.ip, worker.cfg.limits.clients)


def read_over_limit(worker: Any, conn: Connection) -> Request | None:
    """The request head, if a whole and valid one comes within OVER_LIMIT_HEAD_WAIT."""
    wait = min(OVER_LIMIT_HEAD_WAIT, worker.cfg.limits.header_timeout)
    try:
        return read_request(conn.sock, wait)[0]
    except (HeaderTimeout, ProtocolError, OSError):
        return None


def serve_client(worker: Any, conn: Connection) -> None:
    if conn.server.spec.shoutcast_compat:
        # 2.4.4 takes whatever comes on a shoutcast-compat socket for a Shoutcast source
        from fanout.worker.shoutcast import serve_shoutcast_source

        serve_shoutcast_source(worker, conn)
    else:
        serve_request(worker, conn)


def _serve(worker: Any, conn: Connection, serve: Callable[[], None]) -> None:
    """Run `serve` and map what it raises: the one place errors become answers."""
    speaks_http = not conn.server.spec.shoutcast_compat
    try:
        serve()
    except ProtocolError as exc:
        if isinstance(exc, BadHead) and conn.request is None:
            conn.request = exc.request  # a refused head still gets its access.log line
        log.warning("%s: %s (%s)", conn.ip, exc.message, exc.status or "closed")
        stats.count_refusal(exc.status)
        _answer_error(worker, conn, exc)
    except HeaderTimeout:
        log.info("%s: no request head within %ss; closed", conn.ip, worker.cfg.limits.header_timeout)
    except (ConnectionError, BrokenPipeError):
        log.debug("%s: connection lost", conn.ip)
    except Exception:
        supervised.report("worker.connection", conn.ip)
        if not conn.answered and speaks_http:
            _answer_error(worker, conn, ProtocolError("Internal Server Error", 500))


def serve_request(worker: Any, conn: Connection) -> None:
    """Read an HTTP/ICE request head and hand the connection to the request's handler."""
    request, leftover = read_request(conn.sock, worker.cfg.limits.header_timeout)
    conn.request = request
    handler = route(request)
    handler(worker, conn, request, leftover)


def read_request(sock: Any, timeout: float) -> tuple[Request, bytes]:
    """Read one request head; raises HeaderTimeout, ProtocolError or ConnectionError."""
    parser = HeadParser()
    with gevent.Timeout(timeout, HeaderTimeout):
        while True:
            data = sock.recv(HEAD_READ_SIZE)
            if not data:
                raise ConnectionResetError("closed before the request head ended")
            request = parser.feed(data)
            if request is not None:
                return request, parser.leftover


def route(request: Request) -> Callable[..., None]:
    """The handler for a request, by method and path (§5.1)."""
    from fanout.worker import admin, listeners, shoutcast, source, status

    if is_source_method(request.method):
        return source.serve_source
    if request.method not in ("GET", "HEAD"):
        raise ProtocolError("unknown request", 400)
    if request.path == "/admin.cgi":
        return shoutcast.serve_admin_cgi
    if request.path.startswith("/admin/"):
        return admin.serve_admin
    return status.PAGES.get(request.path, listeners.serve_listener)


def log_access(conn: Connection, status: int, sent: int) -> None:
    """One access.log line for a finished connection whose request head was read."""
    request = conn.request
    if request is None:
        return  # Icecast logs requests, not bare connections
    logs.access(format_access_line(AccessRecord(
        conn.ip, conn.started, request.method, request.target, request.version, status, sent,
        request.header("referer") or "", request.header("user-agent") or "",
        time.time() - conn.started)))


def _answer_error(worker: Any, conn: Connection, exc: ProtocolError) -> None:
    if exc.status == 0 or conn.answered:
        return
    config = worker.cfg
    extra = [(h.name, h.value) for h in config.http_headers if h.status == exc.status]
    try:
        conn.send(render_error(exc.status, exc.message, server_id=config.server_id,
                               now=time.time(), extra_headers=extra))
    except OSError:
        pass
