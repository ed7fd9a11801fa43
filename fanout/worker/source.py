"""Source clients: SOURCE / PUT (HTTP/1.0, HTTP/1.1, ICE/1.0), §4 of PROTOCOL.md.

Order of checks, as Icecast 2.4.4: path, credentials (401), Content-Type for PUT (403),
then the supervisor's claim (403 in use / too many sources), then `100 Continue` if asked
and `200 OK`. From then on every byte read goes through the one ingest path into the ring.
"""
from __future__ import annotations

import logging
import socket
import time
from typing import Any

import gevent

from fanout.model.ingest import format_for_content_type
from fanout.protocol.auth import basic_credentials, credentials_match
from fanout.protocol.errors import ProtocolError
from fanout.protocol.http import Request, validate_mount_path, wants_continue
from fanout.protocol.responses import render_continue, render_source_ok
from fanout.ringio import RingFeed
from fanout.worker import admin_queries
from fanout.worker.connection import Connection
from fanout.worker.listeners import TICK

log = logging.getLogger("fanout.source")

# Content type Icecast assumes for a SOURCE request without one.
DEFAULT_CONTENT_TYPE = "audio/mpeg"


def serve_source(worker: Any, conn: Connection, request: Request, leftover: bytes) -> None:
    path = validate_mount_path(request.path)
    resolved = worker.cfg.resolve_mount(path)
    check_source_auth(worker, request, resolved)
    content_type = request.header("content-type")
    if request.method == "PUT" and not content_type:
        raise ProtocolError("No Content-type given", 403)
    info = source_info(conn, request, content_type or DEFAULT_CONTENT_TYPE)
    greeting = render_continue() if wants_continue(request) else b""
    stream_source(worker, conn, path, info, greeting + render_source_ok(), leftover)


def stream_source(worker: Any, conn: Connection, path: str, info: dict[str, Any],
                  greeting: bytes, leftover: bytes) -> None:
    """Claim `path` for an authenticated source, send it `greeting` (if any), then read
    its stream into the ring until it leaves, and release the mount.

    Every kind of source goes through here (SOURCE/PUT, Shoutcast). Raises ProtocolError
    with the supervisor's status (403) when the claim is refused.
    """
    answer = worker.claim(path, info)
    if not answer.ok:
        raise ProtocolError(answer.reason, answer.status)
    worker.counters.add(worker.index, "sources", 1)
    try:
        if greeting:
            conn.send(greeting)
        log.info("%s: source connected on %s (%s)", conn.ip, path, info["content_type"])
        with admin_queries.source_registered(path, conn):
            pump_source(worker, conn, path, leftover, worker.mounts[path].resolved.source_timeout)
    finally:
        worker.counters.add(worker.index, "sources", -1)
        worker.release(path)


def check_source_auth(worker: Any, request: Request, resolved: Any) -> None:
    """Basic `source:<password>` (or the mount's user/password); ice-password with icelogin."""
    given = basic_credentials(request)
    if credentials_match(given, resolved.username, resolved.password):
        return
    ice_password = request.header("ice-password")
    if worker.cfg.icelogin and ice_password is not None and resolved.password is not None:
        from fanout.protocol.auth import Credentials

        if credentials_match(Credentials(resolved.username, ice_password), resolved.username,
                             resolved.password):
            return
    raise ProtocolError("You need to authenticate", 401)


def source_info(conn: Connection, request: Request, content_type: str) -> dict[str, Any]:
    """What listeners, stats and the registry need to know about this source."""
    return {
        "content_type": content_type,
        "format": format_for_content_type(content_type),
        "headers": [(k, v) for k, v in request.headers if k.startswith(("ice-", "icy-"))],
        "source_ip": conn.ip,
        "user_agent": request.header("user-agent") or "",
        "title": "",
    }


def pump_source(worker: Any, conn: Connection, path: str, leftover: bytes,
                timeout: float) -> None:
    """Read until the source closes or stays silent for <source-timeout> seconds."""
    mount = worker.mounts[path]
    feed = RingFeed(mount.ring, mount.info["format"], label=f"{conn.ip}: source on {path}")
    pace = SourcePace(mount.resolved.queue_size)
    conn.sock.settimeout(timeout)
    feed.feed(leftover)
    count = len(leftover)
    while True:
        if count:
            pace.wrote(count)
        try:
            count = feed.read(conn.sock)
        except socket.timeout:
            log.warning("%s: source on %s sent nothing for %ss; disconnected", conn.ip, path, timeout)
            return
        if not count:
            log.info("%s: source on %s disconnected", conn.ip, path)
            return


class SourcePace:
    """Keeps a source from running ahead of the pumps.

    Icecast's source thread reads a chunk and then writes it to every listener, so a source
    pushing faster than real time is paced by that loop. Here the source and the pumps are
    decoupled, so the same bound is explicit: at most 1/16 of the listeners' lag limit per
    pump tick (3.2 MB/s, 25 Mbit/s, with the default queue-size), so that listeners served
    every tick keep up even when a pass over many of them takes several ticks. A real-time
    source (kbit/s) never comes near it; only a faster-than-real-time push waits.
    Better (to do): pace by the pumps' published pass progress instead of a fixed rate.
    """

    def __init__(self, queue_size: int) -> None:
        self.limit = max(4096, queue_size // 16)
        self.window_start = time.monotonic()
        self.written = 0

    def wrote(self, n: int) -> None:
        self.written += n
        if self.written < self.limit:
            return
        wait = self.window_start + TICK - time.monotonic()
        if wait > 0:
            gevent.sleep(wait)
        self.window_start, self.written = time.monotonic(), 0

