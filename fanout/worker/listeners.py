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

What a listener that stops reading costs is bounded twice: fanout lets it lag queue-size
bytes behind the source (`lag_limit`), and its socket's kernel send buffer is fixed
(`listener_sndbuf`) instead of autotuned up to tcp_wmem's 4 MB, so it is dropped once
about queue-size plus that buffer went unread: seconds of audio, not minutes.
"""
from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass
from typing import Any

import gevent

from fanout import core, supervised
from fanout.lifecycle import MountState, RelayState
from fanout.protocol.auth import basic_credentials
from fanout.protocol.errors import ProtocolError
from fanout.protocol.http import Request, wants_icy_metadata
from fanout.protocol.icy import DEFAULT_METAINT
from fanout.protocol.redirect import redirect_location
from fanout.protocol.responses import listener_icy_headers, render_listener_head, render_redirect
from fanout.redirects import choose
from fanout.worker import listener_auth, stats
from fanout.worker.connection import Connection, log_access
from fanout.worker.streamlist import is_relay_client
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
# Seconds a listener of an idle on-demand relay waits for the upstream before a 404.
ON_DEMAND_WAIT = 10.0
# Seconds between two looks at a held listener's mount.
PENDING_CHECK = 0.05
# Listeners one worker may hold per mount while its on-demand upstream connects (each is
# a socket and a greenlet looking every PENDING_CHECK); a flash crowd on a slave's
# on-demand relay is served once the upstream answers, usually within a second.
MAX_PENDING = 1000
# SO_SNDBUF of a listener socket whose <listen-socket> has no <so-sndbuf>: the mount's
# queue-size / SNDBUF_SHARE, within [MIN_SNDBUF, MAX_SNDBUF]. Linux doubles the value, so
# a listener that stops reading holds at most ~queue-size/2 in the kernel besides the
# queue-size it may lag (autotuning would let it hold up to 4 MB). Unacknowledged bytes
# also live in that buffer, so it caps one listener (a slave too) at ~buffer/RTT: with the
# default, 3-7 Mbit/s at 300 ms, far above audio (a far video stream wants a larger
# queue-size or <so-sndbuf>).
SNDBUF_SHARE = 4
# Floor: a pass's worth (MAX_DELAY) of a few Mbit/s, so a small queue-size does not make a
# fast listener need a pass per few KB.
MIN_SNDBUF = 32 * 1024
# Cap: doubled, one BUDGET, the most a pass sends a listener: with the default queue-size
# (512000 -> 128000) a fast listener still takes a whole pass in one sendmsg, so passes
# (one sendmsg per listener each: where the CPU goes) do not multiply; a larger buffer
# would save no pass.
MAX_SNDBUF = BUDGET // 2


@dataclass(slots=True)
class ListenerInfo:
    """What the worker keeps about a listener besides its core state."""

    conn: Connection
    user_agent: str
    connected_at: float
    slave: bool = False  # a relay pull with the relay credentials: not counted as a listener
    closed: bool = False  # closed (dropped, killed, moved away): skip it if still queued


def serve_listener(worker: Any, conn: Connection, request: Request, leftover: bytes) -> None:
    with listener_auth.login(worker, conn, request) as login:  # 401 unless let in (§5.1)
        serve_let_in(worker, conn, request, login)


def serve_let_in(worker: Any, conn: Connection, request: Request,
                 login: listener_auth.Login) -> None:
    mount = live_mount(worker, request.path)
    if mount is None:
        raise ProtocolError("The file you requested could not be found", 404)
    listener_auth.refuse_duplicate(worker, login)
    slave = is_relay_client(worker, request)  # slaves bypass max-listeners, as KH (§1.8)
    if not slave and is_full(mount):
        mount = fallback_when_full(worker, mount)
        if mount is None:
            refusal = ProtocolError("max listeners reached", listener_auth.full_status(login))
            return refuse_or_redirect(worker, conn, request, refusal)
    if not mount.info.connected:  # an on-demand relay waiting for listeners
        mount = await_upstream(worker, mount)
    metaint = 0
    if wants_icy_metadata(request) and not mount.is_ogg:
        # A relayed mount serves with its upstream's interval unless configured (§3.5).
        metaint = mount.resolved.metadata_interval or mount.info.icy_metaint or DEFAULT_METAINT
    head = listener_head(worker, mount, request, metaint)
    if request.method == "HEAD":
        conn.send(head)
        return
    add_listener(worker, mount, conn, request, head, metaint)
    listener_auth.admitted(worker, login, mount)


def live_mount(worker: Any, path: str) -> LocalMount | None:
    """The mount that serves `path`: its own if live, else the first live one of its
    <fallback-mount> chain (§5.1), so listeners can wait on a fallback for a live show."""
    for name in (path, *worker.cfg.fallback_chain(path)):
        mount = worker.mounts.get(name)
        # A relay holding its listeners while it reconnects (HELD) takes no newcomers.
        if mount is not None and mount.state is MountState.LIVE:
            return mount
    return None


def is_full(mount: LocalMount) -> bool:
    return bool(0 <= mount.resolved.max_listeners <= mount.ring.listener_count())


def fallback_when_full(worker: Any, mount: LocalMount) -> LocalMount | None:
    """With <fallback-when-full>, the first live mount with room down `mount`'s fallback
    chain (2.4.4 sends new listeners of a full mount there, §3.9); else None."""
    if not mount.resolved.fallback_when_full:
        return None
    for name in worker.cfg.fallback_chain(mount.name):
        candidate = worker.mounts.get(name)
        if candidate is not None and not candidate.ended and not is_full(candidate):
            return candidate
    return None


def refuse_or_redirect(worker: Any, conn: Connection, request: Request,
                       refusal: ProtocolError) -> None:
    """A master sends a listener it must refuse to a registered slave instead, as KH does
    (PROTOCOL.md §2.5); with no live slave the refusal stands."""
    target = choose(worker.redirect_targets, time.monotonic())
    if target is None:
        raise refusal
    given = basic_credentials(request)
    credentials = None if given is None else (given.user, given.password)
    query = request.target.partition("?")[2]
    location = redirect_location(target.host, target.port, request.path, query, credentials)
    conn.send(render_redirect(location, server_id=worker.cfg.server_id, now=time.time(),
                              version=request.version))
    log.info("%s: %s on %s; redirected to slave %s:%d", conn.ip, refusal.message, request.path,
             target.host, target.port)


def await_upstream(worker: Any, mount: LocalMount) -> LocalMount:
    """Hold a listener of an idle on-demand relay (no head sent, but counted, which is
    what makes the supervisor connect) until the upstream is up; the mount then, or a 404
    "Mount unavailable" if it fails, stops, or takes over ON_DEMAND_WAIT s (§3.7)."""
    if mount.pending >= MAX_PENDING:
        raise ProtocolError(f"Mount unavailable ({MAX_PENDING} listeners already wait for its "
                            "upstream)", 404)
    mount.pending += 1
    publish_count(worker, mount)
    try:
        deadline = time.monotonic() + ON_DEMAND_WAIT
        while not mount.info.connected:
            if (mount.ended or relay_state(mount) is RelayState.RETRYING
                    or time.monotonic() > deadline):
                raise ProtocolError("Mount unavailable", 404)
            gevent.sleep(PENDING_CHECK)
    finally:
        mount.pending -= 1
        publish_count(worker, mount)
    current = worker.mounts.get(mount.name)
    if current is None or current.ended:
        raise ProtocolError("Mount unavailable", 404)
    return current


def relay_state(mount: LocalMount) -> RelayState | None:
    return None if mount.info.relay is None else mount.info.relay.state


def listener_head(worker: Any, mount: LocalMount, request: Request, metaint: int) -> bytes:
    config = worker.cfg
    extra = [(h.name, h.value) for h in config.http_headers if h.status in (None, 200)]
    extra += [(h.name, h.value) for h in mount.resolved.http_headers if h.status in (None, 200)]
    user_agent = request.header("user-agent") or ""
    return render_listener_head(
        server_id=config.server_id, now=time.time(), content_type=mount.info.content_type,
        extra_headers=extra,
        icy_headers=listener_icy_headers(mount.info.headers, mount.resolved.stream_name),
        metaint=metaint, user_agent=user_agent,
        flash=request.header("x-flash-version") is not None or "MSIE" in user_agent)


def start_point(mount: LocalMount) -> tuple[int, bytes]:
    """Where a new listener starts (the burst point) and the Ogg header pages it needs
    first: those of the chained stream's link it starts in (`Ring.start_point`)."""
    return mount.ring.start_point(mount.resolved.burst_size)


def add_listener(worker: Any, mount: LocalMount, conn: Connection, request: Request,
                 head: bytes, metaint: int) -> None:
    pos, pages = start_point(mount)
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF,
                         listener_sndbuf(conn.server.spec.so_sndbuf, mount.resolved.queue_size))
    listener = core.Listener(conn.sock.fileno(), pos, lag_limit(mount), metaint, head + pages)
    slave = is_relay_client(worker, request)
    listener.tag = ListenerInfo(conn, request.header("user-agent") or "", time.time(), slave)
    conn.keep_open()
    mount.listeners.append(listener)
    mount.fresh.append(listener)  # its head and burst go out on the next tick
    publish_count(worker, mount)
    stats.observe_listener_count(mount)
    if not slave:
        worker.counters.add(worker.index, "listeners", 1)
    start_pump(worker, mount)


def lag_limit(mount: LocalMount) -> int:
    """How far a listener of `mount` may fall behind before it is dropped as slow."""
    return int(min(mount.resolved.queue_size, mount.ring.capacity - 2 * core.GUARD))


def listener_sndbuf(so_sndbuf: int, queue_size: int) -> int:
    """SO_SNDBUF for a listener socket: its <listen-socket>'s <so-sndbuf> if set (KH),
    else derived from the mount's queue-size (see SNDBUF_SHARE)."""
    if so_sndbuf > 0:
        return so_sndbuf
    return max(MIN_SNDBUF, min(queue_size // SNDBUF_SHARE, MAX_SNDBUF))


def publish_count(worker: Any, mount: LocalMount) -> None:
    counted = sum(not l.tag.slave for l in mount.listeners) + mount.pending
    mount.ring.set_listener_count(worker.index, counted)


def start_pump(worker: Any, mount: LocalMount) -> None:
    """Run `mount`'s pump unless it runs. Restarted after a crash (its state is the mount's
    listener list); given up after crashing again and again, it closes those listeners."""
    if mount.pump is None and mount.listeners:
        mount.pump = supervised.spawn("worker.pump", pump, worker, mount, restart=True,
                                      give_up=lambda: abandon_pump(worker, mount))


def abandon_pump(worker: Any, mount: LocalMount) -> None:
    close_all_listeners(worker, mount)
    mount.pump = None
    if mount.ended:
        worker.forget_mount(mount)


def pump(worker: Any, mount: LocalMount) -> None:
    """Feed the mount's listeners until none is left."""
    drain_deadline = None
    sent_upto, last_pass = -1, 0.0
    while mount.listeners:
        now, end = time.monotonic(), mount.ring.write_seq
        if mount.fresh:
            serve_fresh(worker, mount)
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


def serve_fresh(worker: Any, mount: LocalMount) -> None:
    """A pass over just the listeners that arrived since the last tick, for a short time to
    first byte. A full pass per arrival would re-send to every listener each tick while a
    crowd arrives; these join the batched passes from the next one on."""
    fresh = [l for l in mount.fresh if not l.tag.closed]
    mount.fresh.clear()
    results = core.send_many(mount.ring, fresh, BUDGET)
    if results:
        drop_failed(worker, mount, results)


def drained(mount: LocalMount) -> bool:
    end = mount.ring.write_seq
    return all(l.pos >= end and l.prefix_left == 0 for l in mount.listeners)


def drop_failed(worker: Any, mount: LocalMount, results: list[tuple[Any, int, int]]) -> None:
    dropped = set()
    for listener, status, errno in results:
        if status == core.LAPPED:
            mount.slow_listeners += 1
            log.info("%s: listener on %s fell too far behind (over %d bytes); dropped after "
                     "%d bytes", listener.tag.conn.ip, mount.name, listener.lag_limit,
                     listener.sent)
        elif status == core.ERROR:
            log.debug("%s: listener on %s gone (errno %d)", listener.tag.conn.ip, mount.name, errno)
        else:
            continue
        dropped.add(id(listener))
        close_listener(worker, mount, listener)
    if dropped:
        mount.listeners[:] = [l for l in mount.listeners if id(l) not in dropped]
        publish_count(worker, mount)


def close_listener(worker: Any, mount: LocalMount, listener: Any) -> None:
    info: ListenerInfo = listener.tag
    info.closed = True
    # Counted once, when it leaves: no per-listener Python work while it is served.
    mount.ring.add_bytes_sent(worker.index, listener.sent)
    try:
        info.conn.sock.close()
    except OSError:
        pass
    worker.counters.add(worker.index, "clients", -1)
    if not info.slave:
        worker.counters.add(worker.index, "listeners", -1)
    log_access(info.conn, 200, listener.sent)


def close_all_listeners(worker: Any, mount: LocalMount) -> None:
    for listener in mount.listeners:
        close_listener(worker, mount, listener)
    mount.listeners.clear()
    publish_count(worker, mount)
