"""The listener pump: one greenlet per mount per worker feeds every listener of the mount.

Theory of operation: a listener, once its request is answered (`listeners.py`), is a core
`Listener` placed at the mount's burst point with its response head queued as its
`prefix`; the socket then belongs to the mount's pump and no greenlet waits on it. The
pump wakes every TICK and makes one compiled `send_many` pass over all of the mount's
listeners when MIN_BATCH new bytes are in the ring or the last pass is MAX_DELAY old:
that pass is where the CPU goes, with one non-blocking `sendmsg` per listener and no
Python call per listener. Listeners that arrived since the last tick get a pass of their
own (`serve_fresh`). Listeners the pass reports as lapped (too far behind: slow) or failed
(peer gone) are closed; would-block ones are simply retried on the next pass. When the
source leaves, the pump lets listeners drain what is in the ring for at most DRAIN_TIME,
then closes them, as Icecast drops them.

Listeners also leave a mount by being killed (`kill_listener`) or moved to another one
(`move_listeners`: a fallback, an override, /admin/moveclients), always between two passes
of the same hub, so a pass never sees a half-removed listener.
"""
from __future__ import annotations

import logging
import time

import gevent

from fanout import core, supervised
from fanout.messages import SlavePullClosed
from fanout.model.ogg import page_length
from fanout.worker.client import log_access
from fanout.worker.state import LocalMount, Worker, info_of

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
# Largest possible Ogg page header (27 fixed bytes, 255 lacing values) and page.
OGG_HEADER_MAX = 27 + 255
OGG_PAGE_MAX = OGG_HEADER_MAX + 255 * 255
# An Ogg listener whose current page is not whole yet is tried again this often, this
# many times (a page is whole within one source write, so the first retry nearly always does).
MOVE_RETRY_DELAY = 0.02
MOVE_RETRIES = 100
# A listener's meta_gen no ring ever publishes (rings publish even generations): the
# moved listener gets the destination's full ICY block at its next boundary.
UNSEEN_META_GEN = 1


def start_point(mount: LocalMount) -> tuple[int, bytes]:
    """Where a new listener starts (the burst point) and the Ogg header pages it needs
    first: those of the chained stream's link it starts in (`Ring.start_point`)."""
    return mount.ring.start_point(mount.resolved.burst_size)


def lag_limit(mount: LocalMount) -> int:
    """How far a listener of `mount` may fall behind before it is dropped as slow."""
    return int(min(mount.resolved.queue_size, mount.ring.capacity - 2 * core.GUARD))


def publish_count(worker: Worker, mount: LocalMount) -> None:
    """Put this worker's count of `mount`'s listeners (slaves not counted, held ones
    counted) into the ring, where every process sums it."""
    counted = sum(not info_of(l).slave for l in mount.listeners) + mount.pending
    mount.ring.set_listener_count(worker.index, counted)


def start_pump(worker: Worker, mount: LocalMount) -> None:
    """Run `mount`'s pump unless it runs. Restarted after a crash (its state is the mount's
    listener list); given up after crashing again and again, it closes those listeners."""
    if mount.pump is None and mount.listeners:
        mount.pump = supervised.spawn("worker.pump", pump, worker, mount, restart=True,
                                      give_up=lambda: abandon_pump(worker, mount))


def abandon_pump(worker: Worker, mount: LocalMount) -> None:
    close_all_listeners(worker, mount)
    mount.pump = None
    if mount.ended:
        worker.forget_mount(mount)


def pump(worker: Worker, mount: LocalMount) -> None:
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


def serve_fresh(worker: Worker, mount: LocalMount) -> None:
    """A pass over just the listeners that arrived since the last tick, for a short time to
    first byte. A full pass per arrival would re-send to every listener each tick while a
    crowd arrives; these join the batched passes from the next one on."""
    fresh = [l for l in mount.fresh if not info_of(l).closed]
    mount.fresh.clear()
    results = core.send_many(mount.ring, fresh, BUDGET)
    if results:
        drop_failed(worker, mount, results)


def drained(mount: LocalMount) -> bool:
    end = mount.ring.write_seq
    return all(l.pos >= end and l.prefix_left == 0 for l in mount.listeners)


def drop_failed(worker: Worker, mount: LocalMount,
                results: list[tuple[core.Listener, int, int]]) -> None:
    dropped = set()
    for listener, status, errno in results:
        if status == core.LAPPED:
            mount.slow_listeners += 1
            log.info("%s: listener on %s fell too far behind (over %d bytes); dropped after "
                     "%d bytes", info_of(listener).conn.ip, mount.name, listener.lag_limit,
                     listener.sent)
        elif status == core.ERROR:
            log.debug("%s: listener on %s gone (errno %d)", info_of(listener).conn.ip,
                      mount.name, errno)
            slave_pull_failed(worker, listener)  # issue 12
        else:
            continue
        dropped.add(id(listener))
        close_listener(worker, mount, listener)
    if dropped:
        mount.listeners[:] = [l for l in mount.listeners if id(l) not in dropped]
        publish_count(worker, mount)


def slave_pull_failed(worker: Worker, listener: core.Listener) -> None:
    """If `listener` is a slave's relay pull and this worker holds no other from that
    address, tell the supervisor (issue 12: a dead slave leaves the redirect rotation at
    once). A slave that stopped one relay on purpose is back at its next registration."""
    info = info_of(listener)
    if not info.slave or worker.cfg.max_redirect_slaves <= 0:
        return
    others = (other for mount in worker.mounts.values() for other in map(info_of, mount.listeners)
              if other is not info and other.slave and not other.closed
              and other.conn.ip == info.conn.ip)
    if next(others, None) is None:
        worker.link.send(SlavePullClosed(info.conn.ip))


def close_listener(worker: Worker, mount: LocalMount, listener: core.Listener) -> None:
    info = info_of(listener)
    info.closed = True
    # Counted once, when it leaves: no per-listener Python work while it is served.
    mount.ring.add_bytes_sent(worker.index, listener.sent)
    try:
        info.conn.close()  # a TLS one's bridge too; and its address is counted no more
    except OSError:
        pass
    worker.counters.add(worker.index, "clients", -1)
    if not info.slave:
        worker.counters.add(worker.index, "listeners", -1)
    log_access(info.conn, 200, listener.sent)


def close_all_listeners(worker: Worker, mount: LocalMount) -> None:
    for listener in mount.listeners:
        close_listener(worker, mount, listener)
    mount.listeners.clear()
    publish_count(worker, mount)


def kill_listener(worker: Worker, mount_name: str, client_id: int) -> bool:
    """Close connection `client_id` if it listens to `mount_name` here; whether it did."""
    local = worker.mounts.get(mount_name)
    match = [l for l in local.listeners if info_of(l).conn.id == client_id] if local else []
    if local is None or not match:
        return False
    local.listeners.remove(match[0])
    close_listener(worker, local, match[0])
    publish_count(worker, local)
    return True


# -- moving listeners to another mount -----------------------------------------------------

def move_listeners(worker: Worker, mount: str, destination: str, chosen: set[int],
                   retries: int) -> int:
    """Move the `chosen` listeners (by id()) of `mount` to `destination`; how many moved
    at once. They keep their socket and ICY framing and continue at the destination's
    burst point. An Ogg listener first gets the rest of the page it is partway through,
    then the destination's header pages; one whose page is not whole in the ring yet is
    moved a moment later (up to `retries` times)."""
    src, dst = worker.mounts.get(mount), worker.mounts.get(destination)
    if src is None or dst is None or dst.ended or not same_format(src, dst):
        return 0
    tails = {id(l): page_tail(src, l) if dst.is_ogg else b""
             for l in src.listeners if id(l) in chosen}
    moving = [l for l in src.listeners if tails.get(id(l)) is not None]
    src.listeners[:] = [l for l in src.listeners if tails.get(id(l)) is None]
    # Not yet served on the source mount: it must not be, now that it moves.
    src.fresh[:] = [l for l in src.fresh if tails.get(id(l)) is None]
    dst.listeners.extend(moved(worker, src, dst, l, tails[id(l)] or b"") for l in moving)
    publish_count(worker, src)
    publish_count(worker, dst)
    worker.tallies.observe_listener_count(dst)
    dst.urgent = True
    start_pump(worker, dst)
    waiting = {key for key, tail in tails.items() if tail is None}
    if waiting and retries:
        supervised.spawn_later(MOVE_RETRY_DELAY, "worker.move", move_listeners, worker, mount,
                               destination, waiting, retries - 1)
    return len(moving)


def same_format(src: LocalMount, dst: LocalMount) -> bool:
    return bool(src.ring.fmt == dst.ring.fmt
                and src.info.content_type == dst.info.content_type)


def page_tail(src: LocalMount, listener: core.Listener) -> bytes | None:
    """The rest of the Ogg page `listener` is partway through (b"" at a page start); None
    while its head is still being sent or that page is not whole in the ring.

    Pages are walked from a sync point (a page start the writer recorded) at or before the
    listener's position: a capture pattern alone could sit inside a packet."""
    ring, pos = src.ring, listener.pos
    start = ring.start_position(ring.write_seq - pos + OGG_PAGE_MAX)
    if listener.prefix_left or start > pos:
        return None
    try:
        data = ring.read(start, pos - start + OGG_PAGE_MAX)
    except core.LappedError:
        return None
    end = 0
    while end < pos - start:
        length = page_length(data[end:end + OGG_HEADER_MAX])
        if not length or end + length > len(data):
            return None  # not a page (the walk lost its way) or the page is still arriving
        end += length
    return data[pos - start:end]


def moved(worker: Worker, src: LocalMount, dst: LocalMount, listener: core.Listener,
          tail: bytes) -> core.Listener:
    """`listener` of `src` made a listener of `dst` (the same object unless Ogg)."""
    # Bytes sent so far belong to the mount they came from.
    src.ring.add_bytes_sent(worker.index, listener.sent)
    pos, pages = start_point(dst)
    if dst.is_ogg:
        prefix = tail + pages
        fresh = core.Listener(listener.fd, pos, lag_limit(dst), 0, prefix)
        fresh.tag = listener.tag
        return fresh
    listener.sent, listener.pos, listener.meta_gen = 0, pos, UNSEEN_META_GEN
    listener.lag_limit = lag_limit(dst)
    return listener
