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

This module sits above every handler (`route` picks one): nothing below imports it.
"""
from __future__ import annotations

import dataclasses
import logging
import ssl
import time
from typing import Callable

from gevent.socket import socket as GeventSocket

from fanout import supervised
from fanout.protocol.errors import ProtocolError
from fanout.protocol.http import BadHead, Request, is_source_method
from fanout.protocol.playlists import is_playlist_path
from fanout.protocol.responses import render_error
from fanout.protocol.sse import EVENTS_PATH
from fanout.protocol.webroot import find_alias
from fanout.worker import edge, listeners, shoutcast, source, status, web, webadmin
from fanout.worker.client import (
    Acceptor, Connection, HeaderTimeout, log_access, read_request,
)
from fanout.worker.state import RequestHandler, Worker

log = logging.getLogger("fanout.client")

# At the clients limit, seconds to wait for a head (a health check sends its request with
# the connection; anything slower gets Icecast's 403).
OVER_LIMIT_HEAD_WAIT = 2.0
# Paths answered even at the clients limit (see the module doc).
OVER_LIMIT_PATHS = frozenset({"/health"})
LIMIT_REACHED = "Icecast connection limit reached"


def serve_connection(worker: Worker, server: Acceptor, sock: GeventSocket,
                     address: tuple[str, int]) -> None:
    conn = Connection(sock, address, server, worker.next_client_id())
    try:
        # issue 12: PROXY header, TLS handshake, per-address limit first (edge.py)
        if _serve(worker, conn, lambda: edge.open_edge(conn, server.certificates, worker.addresses,
                                                       worker.counters, worker.index, worker.cfg)):
            serve_opened(worker, conn)
    finally:
        if not conn.kept:  # only a listener's socket outlives its handler (the pump owns it)
            conn.close()


def serve_opened(worker: Worker, conn: Connection) -> None:
    if worker.counters.total("clients") >= worker.cfg.limits.clients:
        serve_over_limit(worker, conn)
        return
    worker.counters.add(worker.index, "clients", 1)
    worker.counters.add(worker.index, "accepted", 1)
    try:
        _serve(worker, conn, lambda: serve_client(worker, conn))
    finally:
        if conn.kept:
            worker.counters.add(worker.index, "listener_connections", 1)
        else:
            worker.counters.add(worker.index, "clients", -1)
            log_access(conn, conn.status, conn.sent)


def serve_over_limit(worker: Worker, conn: Connection) -> None:
    """At the clients limit: answer /health, refuse anything else with Icecast's 403."""
    request = None
    reads = worker.over_limit_reads  # bounded: state.OVER_LIMIT_READS
    if not conn.server.spec.shoutcast_compat and reads.acquire(blocking=False):
        try:
            request = read_over_limit(worker, conn)
        finally:
            reads.release()
    if request is not None and request.method in ("GET", "HEAD") and request.path in OVER_LIMIT_PATHS:
        conn.request = asked = request
        _serve(worker, conn, lambda: route(asked)(worker, conn, asked, b""))
        log_access(conn, conn.status, conn.sent)
        return
    worker.counters.add(worker.index, "refused", 1)
    _answer_error(worker, conn, ProtocolError(LIMIT_REACHED, 403))
    log.warning("%s: refused, %d clients connected (limit)", conn.ip, worker.cfg.limits.clients)


def read_over_limit(worker: Worker, conn: Connection) -> Request | None:
    """The request head, if a whole and valid one comes within OVER_LIMIT_HEAD_WAIT."""
    wait = min(OVER_LIMIT_HEAD_WAIT, worker.cfg.limits.header_timeout)
    try:
        return read_request(conn.sock, wait)[0]
    except (HeaderTimeout, ProtocolError, OSError):
        return None


def serve_client(worker: Worker, conn: Connection) -> None:
    if conn.server.spec.shoutcast_compat:
        # 2.4.4 takes whatever comes on a shoutcast-compat socket for a Shoutcast source
        shoutcast.serve_shoutcast_source(worker, conn)
    else:
        serve_request(worker, conn)


def _serve(worker: Worker, conn: Connection, serve: Callable[[], None]) -> bool:
    """Run `serve` and map what it raises: the one place errors become answers. Whether
    `serve` returned without raising."""
    speaks_http = not conn.server.spec.shoutcast_compat
    try:
        serve()
        return True
    except ProtocolError as exc:
        if isinstance(exc, BadHead) and conn.request is None:
            conn.request = exc.request  # a refused head still gets its access.log line
        log.warning("%s: %s (%s)", conn.ip, exc.message, exc.status or "closed")
        worker.tallies.count_refusal(exc.status)
        _answer_error(worker, conn, exc)
        if isinstance(exc, edge.AddressOverLimit):
            edge.linger(conn)
    except edge.AddressRefused as exc:  # issue 11: dropped unanswered, 2.4.4's debug line
        log.debug("%s %s", conn.ip, exc.reason)
        conn.request = None  # refused behind a proxy after its head: no access.log line either
    except HeaderTimeout:
        log.info("%s: no request head within %ss; closed", conn.ip, worker.cfg.limits.header_timeout)
    except (ConnectionError, BrokenPipeError, ssl.SSLError):  # SSLError: a TLS client's
        log.debug("%s: connection lost", conn.ip)
    except Exception:
        supervised.report("worker.connection", conn.ip)
        if not conn.answered and speaks_http:
            _answer_error(worker, conn, ProtocolError("Internal Server Error", 500))
    return False


def serve_request(worker: Worker, conn: Connection) -> None:
    """Read an HTTP/ICE request head and hand the connection to the request's handler."""
    request, leftover = read_request(conn.sock, worker.cfg.limits.header_timeout)
    conn.request = request  # as sent: the access log shows the path asked for
    edge.forwarded(conn, request, conn.server.certificates, worker.addresses, worker.counters,
                   worker.index, worker.cfg)  # issue 12: the real client behind trusted proxies
    request = aliased(worker, conn, request)
    handler = route(request)
    if handler is not source.serve_source:  # 2.4.4 counts every request but a source's
        worker.counters.add(worker.index, "client_connections", 1)
    handler(worker, conn, request, leftover)


# -- issue 11 (opswire): <paths><alias> ----------------------------------------------------------
def aliased(worker: Worker, conn: Connection, request: Request) -> Request:
    """`request` with its path replaced by the destination of the first <alias> for it on
    the listen socket it came in on (GET and HEAD only, once, before any route: 2.4.4's
    order, §5.1 step 3). The socket's configured port and bind-address decide (a port-0
    socket counts with the port it was bound to)."""
    aliases = worker.cfg.paths.aliases
    if not aliases or request.method not in ("GET", "HEAD"):
        return request
    spec = conn.server.spec
    port = spec.port or conn.sock.getsockname()[1]
    destination = find_alias(aliases, request.path, port, spec.bind_address)
    return request if destination is None else dataclasses.replace(request, path=destination)
# -- end of issue 11 (opswire) -------------------------------------------------------------------


def route(request: Request) -> RequestHandler:
    """The handler for a request, by method and path (§5.1)."""
    if is_source_method(request.method):
        return source.serve_source
    # --- the web side (webwire): admin UI and its forms, status events, playlists -------
    if request.path.startswith("/admin/"):
        if request.method not in ("GET", "HEAD", "POST"):  # POST: the admin UI's forms
            raise ProtocolError("unknown request", 400)
        return webadmin.serve_admin_request
    if request.method in ("GET", "HEAD"):
        if request.path == EVENTS_PATH:
            return web.serve_status_events
        if is_playlist_path(request.path):
            return web.serve_playlist_or_listener
    # --- end of the web side ------------------------------------------------------------
    if request.method not in ("GET", "HEAD"):
        raise ProtocolError("unknown request", 400)
    if request.path == "/admin.cgi":
        return shoutcast.serve_admin_cgi
    return status.PAGES.get(request.path, listeners.serve_listener)


def _answer_error(worker: Worker, conn: Connection, exc: ProtocolError) -> None:
    if exc.status == 0 or conn.answered:
        return
    config = worker.cfg
    extra = [(h.name, h.value) for h in config.http_headers if h.status == exc.status]
    try:
        conn.send(render_error(exc.status, exc.message, server_id=config.server_id,
                               now=time.time(), extra_headers=extra))
    except OSError:
        pass
