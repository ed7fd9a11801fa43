"""The web side's own routes: the public mounts' playlists and the status page's events.

- `/<mount>.m3u` and `/<mount>.xspf` (`fanout.protocol.playlists`, Icecast's formats):
  for a live public mount, when the path is not itself served as a mount (a mount named
  "/a.m3u" is streamed, as in Icecast). Hidden and absent mounts get the same 404.
- `sse.EVENTS_PATH`: the status page's server-sent events. A stream opens with every
  public mount, then gets what changed whenever the worker's `StatusFeed` (`webfeed.py`)
  has new views, and a keep-alive comment after `sse.KEEPALIVE_SECONDS` of silence. It
  holds a client slot (`<limits><clients>`) like any connection, at most
  `webfeed.MAX_STREAMS` are open per worker (503 beyond); a browser that closes its
  end is noticed at once (`watch_close`), one that stops reading is dropped after
  SEND_TIMEOUT s.
"""
from __future__ import annotations

import dataclasses
import logging
import socket
import time

import gevent
from gevent.event import Event
from gevent.socket import socket as GeventSocket
from gevent.socket import wait_read

from fanout import supervised
from fanout.protocol.errors import ProtocolError
from fanout.protocol.http import Request
from fanout.protocol.playlists import M3U, listen_url, playlist_request, render_playlist
from fanout.protocol.sse import (
    KEEPALIVE_SECONDS, Views, changes, keepalive, opening, render_events_head, views,
)
from fanout.protocol.stats import public_mount_stats
from fanout.worker import stats, status
from fanout.worker.client import Connection
from fanout.worker.link import GATHER_WAIT
from fanout.worker.listeners import live_mount, serve_listener
from fanout.worker.state import Worker
from fanout.worker.webfeed import MAX_STREAMS, StatusFeed

log = logging.getLogger("fanout.web")

# Seconds a browser may leave an event stream unread before it is dropped (its socket's
# send timeout): far longer than any live page takes, short enough to free the slot.
SEND_TIMEOUT = 30.0
# Seconds a new stream waits for the feed's first views (a gather: at most GATHER_WAIT).
FIRST_VIEWS_WAIT = GATHER_WAIT + 1.0
STREAMS_FULL = "Too many status event streams"
# Bytes read at a time from an event stream's browser, which should send nothing more.
CLOSE_WATCH_READ = 1024


# --- playlists --------------------------------------------------------------------------


def playlist_of(worker: Worker, path: str) -> tuple[str, str] | None:
    """(mount, kind) when `path` asks for a live public mount's playlist, else None."""
    if live_mount(worker, path) is not None:
        return None
    public = [m.name for m in stats.live_mounts(worker) if not m.resolved.hidden]
    return playlist_request(path, public)


def serve_playlist_or_listener(worker: Worker, conn: Connection, request: Request,
                               leftover: bytes) -> None:
    """A path with a playlist's name: the playlist of a live public mount, else whatever
    a listener asking for that path gets (a mount of that name, or 404)."""
    asked = playlist_of(worker, request.path)
    if asked is None:
        serve_listener(worker, conn, request, leftover)
    else:
        serve_playlist(worker, conn, request, asked)


def serve_playlist(worker: Worker, conn: Connection, request: Request,
                   asked: tuple[str, str]) -> None:
    mount, kind = asked
    url = listen_url(mount, request.header("host"), worker.cfg.hostname,
                     stats.advertised_port(worker))  # https once X-Forwarded-Proto is trusted
    mounts = [] if kind == M3U else status.public_stats(worker, mount)  # xspf shows figures
    content_type, body = render_playlist(kind, url, public_mount_stats(mounts[0]) if mounts else {})
    status.send(worker, conn, body, content_type)


# --- the status page's events -----------------------------------------------------------


def serve_status_events(worker: Worker, conn: Connection, request: Request, leftover: bytes) -> None:
    feed = worker.status_feed
    if not feed.admit():
        log.warning("%s: status events refused: %d streams open on this worker (the most)",
                    conn.ip, MAX_STREAMS)
        raise ProtocolError(STREAMS_FULL, 503)
    try:
        feed.start(lambda: look(worker), lambda: refresh(worker))
        if not feed.ready.wait(FIRST_VIEWS_WAIT):
            raise ProtocolError("Server busy, try again later", 503)
        stream_events(worker, conn, request, feed)
    finally:
        feed.leave()


def look(worker: Worker) -> object:
    """What a row could show of each live mount, cheaply and locally (no gather): a
    change here is worth a refresh. A relay's own figures (bytes read, reconnects) are left
    out: the page does not show them and they change every few seconds."""
    return [(m.name, m.resolved, dataclasses.replace(m.info, relay=None), m.ring.listener_count())
            for m in stats.live_mounts(worker)]


def refresh(worker: Worker) -> Views:
    """The rows of every public mount, as the status page shows them (a gather)."""
    return views([public_mount_stats(s) for s in status.public_stats(worker)])


def stream_events(worker: Worker, conn: Connection, request: Request, feed: StatusFeed) -> None:
    """Send the opening snapshot, then each change (or a keep-alive) until the browser
    goes away: it closed its end (seen at once), or a send failed or timed out."""
    shown = feed.views
    conn.sock.settimeout(SEND_TIMEOUT)
    head = render_events_head(worker.cfg.server_id, time.time())
    if request.method == "HEAD":
        conn.send(head)
        return
    left = Event()
    watcher = supervised.spawn("worker.connection", watch_close, conn.sock, left, restart=False)
    try:
        conn.send(head + opening(shown))
        while not left.is_set():
            updated = feed.updated  # taken first: a change after this sets it
            if feed.views == shown:
                gevent.wait([updated, left], timeout=KEEPALIVE_SECONDS, count=1)
            current = feed.views
            if not left.is_set():
                conn.send(changes(shown, current) or keepalive())
            shown = current
    except socket.timeout:
        log.info("%s: status events unread for %ss; dropped", conn.ip, SEND_TIMEOUT)
    finally:
        watcher.kill()


def watch_close(sock: GeventSocket, left: Event) -> None:
    """Set `left` once the browser closed its end of an event stream (it sends nothing
    after its request: whatever else comes is read and ignored)."""
    try:
        while True:
            wait_read(sock.fileno())
            if not sock.recv(CLOSE_WATCH_READ):
                return
    except OSError:
        return
    finally:
        left.set()
