"""Source clients: SOURCE / PUT (HTTP/1.0, HTTP/1.1, ICE/1.0), §4 of PROTOCOL.md.

Order of checks, as Icecast 2.4.4: path, credentials (401), Content-Type for PUT (403),
then the supervisor's claim (400 mount name too long, 403 in use / too many sources), then
`100 Continue` if asked and `200 OK`. From then on every byte read goes through the one
ingest path into the ring.

A body sent with `Transfer-Encoding: chunked` (ffmpeg's `http://` output with `-method
PUT`, `curl -T -`) is decoded on the way (`fanout.protocol.chunked`); 2.4.4 would pass the
framing to listeners inside the audio. Bad framing ends the source with one log line; any
other transfer coding is refused with 400 before the claim.
"""
from __future__ import annotations

import logging
import math
import socket
import ssl
import time
from contextlib import contextmanager
from typing import Iterator

import gevent
from gevent.socket import socket as GeventSocket

from fanout.hooks import ON_CONNECT, ON_DISCONNECT, run_hook
from fanout.messages import StreamTags
from fanout.model.link_tags import LinkTags, link_tags
from fanout.mountinfo import MountInfo, stream_info
from fanout.config import ResolvedMount
from fanout.protocol.auth import Credentials, basic_credentials, credentials_match
from fanout.protocol.chunked import ChunkedDecoder, body_decoder
from fanout.protocol.errors import ProtocolError
from fanout.protocol.http import Request, validate_mount_path, wants_continue
from fanout.protocol.responses import render_continue, render_source_ok
from fanout.ringio import RingFeed
from fanout.source_files import DumpFile
from fanout.worker.client import Connection
from fanout.worker.pump import MAX_DELAY
from fanout.worker.state import Worker

log = logging.getLogger("fanout.source")

# Bytes read per recv from a source; sources send far less than this per event-loop turn.
SOURCE_READ_SIZE = 65536
# A source writes at most queue-size / PACE_SHARE bytes (and at least PACE_MIN) per
# PACE_INTERVAL seconds: MAX_DELAY / PACE_INTERVAL / PACE_SHARE = 15/16 of a queue per
# latency deadline (see SourcePace).
PACE_INTERVAL = MAX_DELAY / 15
PACE_SHARE = 16
PACE_MIN = 4096
# Fewest seconds between two tag updates (StreamTags) of one source: a source chaining tiny
# Ogg links as fast as it can must not flood the supervisor and every worker with updates.
TAGS_INTERVAL = 0.5


def serve_source(worker: Worker, conn: Connection, request: Request, leftover: bytes) -> None:
    path = validate_mount_path(request.path)
    resolved = worker.cfg.resolve_mount(path)
    check_source_auth(worker, request, resolved)
    content_type = request.header("content-type")
    if request.method == "PUT" and not content_type:
        raise ProtocolError("No Content-type given", 403)
    chunks = body_decoder([v for k, v in request.headers if k == "transfer-encoding"])
    info = source_info(conn, request, content_type)
    greeting = render_continue() if wants_continue(request) else b""
    stream_source(worker, conn, path, info, greeting + render_source_ok(), leftover, chunks)


def stream_source(worker: Worker, conn: Connection, path: str, info: MountInfo,
                  greeting: bytes, leftover: bytes, chunks: ChunkedDecoder | None = None) -> None:
    """Claim `path` for an authenticated source, send it `greeting` (if any), then read
    its stream (through `chunks` if it is chunked) into the ring until it leaves, and
    release the mount.

    Every kind of source goes through here (SOURCE/PUT, Shoutcast). Raises ProtocolError
    with the supervisor's status (400, 403, 503) when the claim is refused.
    """
    answer = worker.claim(path, info)
    if not answer.ok:
        raise ProtocolError(answer.reason, answer.status)
    worker.counters.add(worker.index, "sources", 1)
    worker.counters.add(worker.index, "source_client_connections", 1)
    try:
        if greeting:
            conn.send(greeting)
        log.info("%s: source connected on %s (%s)", conn.ip, path, info.content_type)
        with source_registered(worker, path, conn), source_scripts(worker, path) as dump:
            stream = SourceStream(conn, path, worker.mounts[path].resolved.source_timeout, chunks,
                                  dump)
            pump_source(worker, path, stream, leftover)
    finally:
        worker.counters.add(worker.index, "sources", -1)
        worker.link.release(path)


@contextmanager
def source_registered(worker: Worker, mount: str, conn: Connection) -> Iterator[None]:
    """Make the source on `mount` reachable for /admin/killsource while it streams."""
    worker.sources[mount] = conn
    try:
        yield
    finally:
        if worker.sources.get(mount) is conn:
            del worker.sources[mount]


# -- issue 11 (opswire): <dump-file>, <on-connect>, <on-disconnect> ---------------------------
# A relay pull run by a worker calls this too (2.4.4 runs a mount's scripts and dump for
# any kind of source).
@contextmanager
def source_scripts(worker: Worker, path: str) -> Iterator[DumpFile | None]:
    """While a source streams to `path`: its dump file (None: none configured, or it
    could not be opened), its on-connect program run at the start and its on-disconnect
    program at the end, neither waited for (fanout.hooks)."""
    resolved = worker.mounts[path].resolved
    dump = DumpFile.open(path, resolved.dump_file, time.time()) if resolved.dump_file else None
    if resolved.on_connect:
        run_hook(ON_CONNECT, resolved.on_connect, path)
    try:
        yield dump
    finally:
        if dump is not None:
            dump.close()
        if resolved.on_disconnect:
            run_hook(ON_DISCONNECT, resolved.on_disconnect, path)


def check_source_auth(worker: Worker, request: Request, resolved: ResolvedMount) -> None:
    """Basic `source:<password>` (or the mount's user/password); ice-password with icelogin."""
    given = basic_credentials(request)
    if credentials_match(given, resolved.username, resolved.password):
        return
    ice_password = request.header("ice-password")
    if worker.cfg.icelogin and ice_password is not None and resolved.password is not None:
        if credentials_match(Credentials(resolved.username, ice_password), resolved.username,
                             resolved.password):
            return
    raise ProtocolError("You need to authenticate", 401)


def source_info(conn: Connection, request: Request, content_type: str | None,
                shoutcast_compat: bool = False) -> MountInfo:
    """What listeners, stats and the registry need to know about this source's stream
    (no Content-Type: Icecast's DEFAULT_CONTENT_TYPE)."""
    return stream_info(content_type, conn.ip,
                       headers=[(k, v) for k, v in request.headers if k.startswith(("ice-", "icy-"))],
                       user_agent=request.header("user-agent") or "",
                       shoutcast_compat=shoutcast_compat)


def pump_source(worker: Worker, path: str, stream: "SourceStream", leftover: bytes) -> None:
    """Copy the source's stream into the mount's ring until the stream is over."""
    mount = worker.mounts[path]
    pace = SourcePace(mount.resolved.queue_size)
    feed = RingFeed(mount.ring, mount.info.format, label=f"{stream.conn.ip}: source on {path}",
                    pace=(pace.limit, PACE_INTERVAL))
    links = LinkWatch(worker, path)
    try:
        data = stream.unframe(leftover)
        count = None if data is None else stream.feed(feed, data)
        while count is not None:
            if count and not feed.polled:  # the FeedHub paces what it reads itself
                pace.wrote(count)
            links.check(feed)
            count = stream.ingest(feed, links.due())
    finally:
        feed.close()


class LinkWatch:
    """Tells the supervisor what each new Ogg link of a source says (title, artist, codec
    stats: `fanout.model.link_tags`), so every status output shows it, as Icecast's do.
    At most one update per TAGS_INTERVAL: the newest link's tags go out once it is over."""

    def __init__(self, worker: Worker, mount: str) -> None:
        self.worker, self.mount = worker, mount
        self.header_set: bytes | None = None  # the newest link looked at
        self.pending: LinkTags | None = None  # its tags, until they went out
        self.next_send = 0.0  # time.monotonic() from which the next update may go

    def due(self) -> float:
        """When `check` has something to do (time.monotonic(); inf: not before a new link)."""
        return math.inf if self.pending is None else self.next_send

    def check(self, feed: RingFeed) -> None:
        """Cheap unless a new link began or its tags wait: an identity test."""
        if feed.header_set is not self.header_set and feed.header_set is not None:
            self.header_set = feed.header_set
            self.pending = link_tags(feed.header_set)
        now = time.monotonic()
        if self.pending is None or now < self.next_send:
            return
        tags, self.pending, self.next_send = self.pending, None, now + TAGS_INTERVAL
        try:
            self.worker.link.send(StreamTags(self.mount, tags.title, tags.artist, tags.codec))
        except OSError:
            pass  # the supervisor is gone: this worker stops too


class SourceStream:
    """A source's socket as its stream bytes: chunk framing removed, and idleness judged
    by the socket, not by the clock.

    `read` and `unframe` return the next stream bytes (possibly none, while a chunk line
    is cut), or None once the stream is over (closed, silent for <source-timeout>, chunked
    body ended or badly framed), having logged why in one line. With a dump file, every
    stream byte also goes there.
    """

    def __init__(self, conn: Connection, path: str, timeout: float,
                 chunks: ChunkedDecoder | None, dump: DumpFile | None = None) -> None:
        self.conn, self.path, self.timeout, self.chunks = conn, path, timeout, chunks
        self.dump = dump
        self.body_ended = False
        conn.sock.settimeout(timeout)

    def ingest(self, feed: RingFeed, until: float = math.inf) -> int | None:
        """Read what the source sent into `feed` (straight into the ring unless chunked or
        dumped: those read first), returning by `until` at the latest; the bytes read, or
        None once the stream is over."""
        if self.chunks is not None or self.dump is not None:
            data = self.read()
            return None if data is None else self.feed(feed, data)
        try:
            count = feed.read(self.conn.sock, until)  # idle only if nothing to read now either
        except socket.timeout:
            self.ended(logging.WARNING, f"sent nothing for {self.timeout}s; disconnected")
            return None
        if count is None:
            self.ended(logging.INFO, "disconnected")
        return count

    def feed(self, feed: RingFeed, data: bytes) -> int:
        """Stream bytes already read into `feed` (and the dump); their length."""
        if self.dump is not None:
            self.dump.write(self.path, data)
        return feed.feed(data)

    def read(self) -> bytes | None:
        if self.body_ended:
            return self.ended(logging.INFO, "ended its chunked body")
        data = receive_or_idle(self.conn.sock)
        if data is None:
            return self.ended(logging.WARNING, f"sent nothing for {self.timeout}s; disconnected")
        if not data:
            return self.ended(logging.INFO, "disconnected")
        return self.unframe(data)

    def unframe(self, data: bytes) -> bytes | None:
        if self.chunks is None:
            return data
        try:
            payload = self.chunks.feed(data)
        except ProtocolError as bad:
            return self.ended(logging.WARNING, f"sent bad chunked framing ({bad.message}); "
                                               "disconnected")
        self.body_ended = self.chunks.done  # its last payload still goes in
        return payload

    def ended(self, level: int, why: str) -> bytes | None:
        """Log why the stream is over; None, for `read` and `unframe` to return."""
        log.log(level, "%s: source on %s %s", self.conn.ip, self.path, why)
        return None


def receive_or_idle(sock: GeventSocket) -> bytes | None:
    """The next bytes from a source socket (b"" once it closed), or None if it had nothing
    to read for its timeout.

    The timeout is a timer of the hub, and the hub may not have run for a while (the
    process was stopped or swapped out): after such a pause the timer can fire before the
    hub sees the bytes that arrived meanwhile. So a source is idle only if the timer fired
    *and* its socket has nothing to read now.
    """
    data: bytes
    try:
        data = sock.recv(SOURCE_READ_SIZE)
        return data
    except socket.timeout:
        pass
    timeout = sock.gettimeout()
    sock.settimeout(0.0)
    try:
        data = sock.recv(SOURCE_READ_SIZE)
        return data
    except (BlockingIOError, ssl.SSLWantReadError):  # a TLS source's socket: the latter
        return None
    finally:
        sock.settimeout(timeout)


class SourcePace:
    """Keeps a source from running ahead of the pumps.

    Icecast's source thread reads a chunk and then writes it to every listener, so a source
    pushing faster than real time is paced by that loop. Here the source and the pumps are
    decoupled, so the same bound is explicit: at most queue-size / PACE_SHARE bytes per
    PACE_INTERVAL (3.2 MB/s, 25 Mbit/s, with the default queue-size). A listener served at
    least once per latency deadline (pump.MAX_DELAY) then never falls more than 15/16 of
    its queue-size behind, even when a pass over many listeners comes late. A real-time
    source (kbit/s) never comes near it; only a faster-than-real-time push waits.
    """

    def __init__(self, queue_size: int) -> None:
        self.limit = max(PACE_MIN, queue_size // PACE_SHARE)
        self.window_start = time.monotonic()
        self.written = 0

    def wrote(self, n: int) -> None:
        self.written += n
        if self.written < self.limit:
            return
        wait = self.window_start + PACE_INTERVAL - time.monotonic()
        if wait > 0:
            gevent.sleep(wait)
        self.window_start, self.written = time.monotonic(), 0
