"""Listener clients and the pump that feeds them.

Theory of operation: a listener's request is answered by queueing its response head (and,
for Ogg, the stream's header pages) as the `prefix` of a core `Listener` placed at the
mount's burst point; the socket then belongs to the mount's pump and no greenlet waits on
it. One pump greenlet per mount per worker makes one compiled `send_many` pass over all
of the mount's listeners every TICK: that pass is where the CPU goes, with one non-blocking
`sendmsg` per listener and no Python call per listener. Listeners the pass reports as
lapped (too far behind: slow) or failed (peer gone) are closed; would-block ones are simply
retried on the next tick. When the source leaves, the pump lets listeners drain what is in
the ring for at most DRAIN_TIME, then closes them, as Icecast drops them.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import gevent

from fanout import core
from fanout.protocol.errors import ProtocolError
from fanout.protocol.http import Request, wants_icy_metadata
from fanout.protocol.icy import DEFAULT_METAINT
from fanout.protocol.responses import listener_icy_headers, render_listener_head
from fanout.worker.connection import Connection
from fanout.worker.worker import LocalMount

log = logging.getLogger("fanout.listener")

# Seconds between checks whether a sender pass is due (cheap: a few comparisons).
TICK = 0.01
# A pass costs one sendmsg per listener with data, so passes are batched: one runs when
# MIN_BATCH new bytes are in the ring, or when the oldest unsent byte is MAX_DELAY old (this
# bounds source->listener latency), or at once when a new listener waits for its head.
MIN_BATCH = 8192
MAX_DELAY = 0.15
# Ring bytes one listener may be sent in one pass (fairness between listeners).
BUDGET = 256 * 1024
# Seconds listeners may keep draining after their source left.
DRAIN_TIME = 2.0


@dataclass(slots=True)
class ListenerInfo:
    """What the worker keeps about a listener besides its core state."""

    conn: Connection
    user_agent: str
    connected_at: float


def serve_listener(worker: Any, conn: Connection, request: Request, leftover: bytes) -> None:
    mount = worker.mounts.get(request.path)
    if mount is None or mount.ended:
        raise ProtocolError("The file you requested could not be found", 404)
    resolved = mount.resolved
    if 0 <= resolved.max_listeners <= mount.ring.listener_count():
        raise ProtocolError("max listeners reached", 403)
    metaint = 0
    if wants_icy_metadata(request) and not mount.is_ogg:
        metaint = resolved.metadata_interval or DEFAULT_METAINT
    head = listener_head(worker, mount, request, metaint)
    if request.method == "HEAD":
        conn.send(head)
        return
    add_listener(worker, mount, conn, request, head, metaint)


def listener_head(worker: Any, mount: LocalMount, request: Request, metaint: int) -> bytes:
    config = worker.cfg
    extra = [(h.name, h.value) for h in config.http_headers if h.status in (None, 200)]
    extra += [(h.name, h.value) for h in mount.resolved.http_headers if h.status in (None, 200)]
    user_agent = request.header("user-agent") or ""
    return render_listener_head(
        server_id=config.server_id, now=time.time(), content_type=mount.info["content_type"],
        extra_headers=extra,
        icy_headers=listener_icy_headers(mount.info["headers"], mount.resolved.stream_name),
        metaint=metaint, user_agent=user_agent,
        flash=request.header("x-flash-version") is not None or "MSIE" in user_agent)


def start_position(mount: LocalMount) -> int:
    """Where a new listener starts: the burst point, or the very start of an Ogg stream
    whose header pages are not complete yet (they are still in the ring)."""
    ring = mount.ring
    if mount.is_ogg and ring.stream_header()[0] == 0:
        oldest_safe = ring.write_seq + core.GUARD - ring.capacity
        if oldest_safe <= 0:
            return 0
    return int(ring.start_position(mount.resolved.burst_size))


def add_listener(worker: Any, mount: LocalMount, conn: Connection, request: Request,
                 head: bytes, metaint: int) -> None:
    ring = mount.ring
    prefix = head
    pos = start_position(mount)
    if mount.is_ogg and pos != 0:
        prefix += ring.stream_header()[1]
    lag_limit = min(mount.resolved.queue_size, ring.capacity - 2 * core.GUARD)
    listener = core.Listener(conn.sock.fileno(), pos, lag_limit, metaint, prefix)
    listener.tag = ListenerInfo(conn, request.header("user-agent") or "", time.time())
    conn.keep_open()
    mount.listeners.append(listener)
    mount.urgent = True  # its head and burst go out on the next tick, not after MAX_DELAY
    publish_count(worker, mount)
    worker.counters.add(worker.index, "listeners", 1)
    if mount.pump is None:
        mount.pump = gevent.spawn(pump, worker, mount)


def publish_count(worker: Any, mount: LocalMount) -> None:
    mount.ring.set_listener_count(worker.index, len(mount.listeners))


def pump(worker: Any, mount: LocalMount) -> None:
    """Feed the mount's listeners until none is left."""
    drain_deadline = None
    sent_upto, last_pass = -1, 0.0
    while mount.listeners:
        now, end = time.monotonic(), mount.ring.write_seq
        if mount.urgent or end - sent_upto >= MIN_BATCH or now - last_pass >= MAX_DELAY:
            mount.urgent = False
            sent_upto, last_pass = end, now
            results = core.send_many(mount.ring, mount.listeners, BUDGET)
            if results:
                drop_failed(worker, mount, results)
        if mount.ended:
            drain_deadline = drain_deadline or now + DRAIN_TIME
            if drained(mount) or now > drain_deadline:
                close_all_listeners(worker, mount)
                break
        gevent.sleep(TICK)
    mount.pump = None
    if mount.ended:
        worker.forget_mount(mount)


def drained(mount: LocalMount) -> bool:
    end = mount.ring.write_seq
    return all(l.pos >= end and l.prefix_left == 0 for l in mount.listeners)


def drop_failed(worker: Any, mount: LocalMount, results: list[tuple[Any, int, int]]) -> None:
    dropped = set()
    for listener, status, errno in results:
        if status == core.LAPPED:
            mount.slow_listeners += 1
            log.info("%s: listener on %s fell too far behind; dropped", listener.tag.conn.ip, mount.name)
        elif status == core.ERROR:
            log.debug("%s: listener on %s gone (errno %d)", listener.tag.conn.ip, mount.name, errno)
        else:
            continue
        dropped.add(id(listener))
        close_listener(worker, listener)
    if dropped:
        mount.listeners[:] = [l for l in mount.listeners if id(l) not in dropped]
        publish_count(worker, mount)


def close_listener(worker: Any, listener: Any) -> None:
    info: ListenerInfo = listener.tag
    try:
        info.conn.sock.close()
    except OSError:
        pass
    worker.counters.add(worker.index, "clients", -1)
    worker.counters.add(worker.index, "listeners", -1)


def close_all_listeners(worker: Any, mount: LocalMount) -> None:
    for listener in mount.listeners:
        close_listener(worker, listener)
    mount.listeners.clear()
    publish_count(worker, mount)
