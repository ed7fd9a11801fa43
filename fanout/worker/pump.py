"""The listener pump: one loop per worker feeds every listener of every mount it serves.

Theory of operation: a listener, once its request is answered (`listeners.py`), is a core
`Listener` placed at the mount's burst point with its response head queued as its
`prefix`; the socket then belongs to the pump and no greenlet waits on it. One supervised
greenlet per worker (`pump_loop`) serves every mount, and it waits at ONE point: the
worker's doorbell, a `core.Waiter` on its eventfd (fanout._core's "Wake-ups"), with a
timeout at the earliest latency deadline. A mount's pass, one compiled `send_many` over
its listeners (one non-blocking sendmsg each: that is where the CPU goes), runs when
- its ring advanced MIN_BATCH bytes since its last pass: the ring's wake batch, so its
  writer (a source or relay pull in any worker) rings this worker's doorbell;
- its latency deadline came: MAX_DELAY after a pass that saw new bytes or left a listener
  blocked, and there is something to send (this bounds source->listener latency);
- listeners arrived (`start_pump` kicks the loop: they get a pass of their own,
  `serve_fresh`, for a short time to first byte) or moved in (`urgent`), or it ended.
A mount whose ring stopped moving is idle: no deadline, and its ring's wake batch drops to
IDLE_BATCH so that the first new byte rings at once (as the 10 ms tick this replaced
would have seen it); the pass it causes sets the batch back. The batch is a field of the
shared ring, so every worker reading it sets it the same way. An idle mount costs nothing,
and a worker with nothing to send sleeps on its eventfd.

Listeners the pass reports as lapped (too far behind: slow) or failed (peer gone) are
closed; would-block ones are retried at the next deadline. When the source leaves, the
listeners drain what is in the ring for at most DRAIN_TIME, then are closed, as Icecast
drops them. A pass that raises closes that mount's listeners only (reported); the loop
goes on. Passes are counted in the shared counters (`pump_passes`, /metrics).

Listeners also leave a mount by being killed (`kill_listener`) or moved to another one
(`move_listeners`: a fallback, an override, /admin/moveclients), always between two passes
of the same hub, so a pass never sees a half-removed listener.
"""
from __future__ import annotations

import heapq
import logging
import os
import socket
import time

import gevent
from gevent.hub import get_hub
from gevent.socket import wait

from fanout import core, supervised
from fanout.messages import SlavePullClosed
from fanout.model.ogg import page_length
from fanout.worker.client import log_access
from fanout.worker.state import LocalMount, Pumping, Worker, info_of

log = logging.getLogger("fanout.listener")

# A pass costs one sendmsg per listener with data, so passes are batched: one runs when
# MIN_BATCH new bytes are in the ring (its writer rings then: a new ring's wake batch), or
# when the oldest unsent byte is MAX_DELAY old (this bounds source->listener latency), or
# at once when a new listener waits for its head.
MIN_BATCH = core.WAKE_BATCH  # 8 KiB
MAX_DELAY = 0.15
# Wake batch of an idle mount's ring: its first new byte rings the doorbell.
IDLE_BATCH = 1
# Deadlines this close after the one that woke the loop are served in the same wake-up:
# many mounts cost fewer wake-ups, each pass at most this much later.
DEADLINE_SLACK = 0.01
# A turn serves every due mount in a row and yields to the hub only after this many seconds
# of passes (and at its end): a yield per mount cost a hub iteration (an epoll_wait and two
# switches) per pass, which with many small mounts was most of the pump's cost.
TURN_SLICE = 0.005
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


# -- the loop ---------------------------------------------------------------------------------

def start_pump(worker: Worker, mount: LocalMount) -> None:
    """Serve `mount`'s listeners here: its ring rings this worker from now on, and its
    fresh or moved-in listeners get a pass at once."""
    pumping = worker.pumping
    if not mount.watched and mount.listeners:
        pumping.waiter.watch(mount.ring, mount, mount.ring.write_seq)
        mount.watched, mount.passed = True, mount.ring.write_seq
    kick(pumping, mount)
    if pumping.loop is None or pumping.loop.dead:
        # Restarted (its state is the worker's); given up after crashing again and again,
        # every listener is closed.
        pumping.loop = supervised.spawn("worker.pump", pump_loop, worker, restart=True,
                                        give_up=lambda: abandon_pumps(worker))


def mount_ended(worker: Worker, mount: LocalMount) -> None:
    """`mount` ended: its listeners drain what the ring holds for at most DRAIN_TIME; one
    with no listener here is forgotten at once."""
    if not mount.listeners:
        worker.forget_mount(mount)
        return
    mount.drain_until = time.monotonic() + DRAIN_TIME
    kick(worker.pumping, mount)


def kick(pumping: Pumping, mount: LocalMount) -> None:
    """Have the loop serve `mount` at once (waking it if it sleeps)."""
    pumping.asked[id(mount)] = mount
    if pumping.waiting:
        pumping.waiting = False
        os.eventfd_write(pumping.waiter.fd, 1)  # our own doorbell: the one waiting point


def abandon_pumps(worker: Worker) -> None:
    for mount in worker.served_mounts():
        close_all_listeners(worker, mount)
    worker.pumping.loop = None


def pump_loop(worker: Worker) -> None:
    """Serve every mount of this worker when it is due; sleep on the doorbell otherwise."""
    pumping = worker.pumping
    watcher = get_hub().loop.io(pumping.waiter.fd, 1)
    try:
        while True:
            turn_started = time.monotonic()
            for mount in due_mounts(pumping, wait_for_work(pumping, watcher)):
                serve_mount(worker, mount)
                if time.monotonic() - turn_started >= TURN_SLICE:
                    gevent.sleep(0)  # a long turn lets the hub's other greenlets run
                    turn_started = time.monotonic()
            count_passes(worker)
            gevent.sleep(0)  # and every turn does, even one that never had to wait
    finally:
        watcher.close()


def wait_for_work(pumping: Pumping, watcher: object) -> list[LocalMount]:
    """Sleep until some mount is due (its ring rang, its deadline came, it was kicked);
    the mounts whose ring advanced their wake batch since their last pass."""
    waiter = pumping.waiter
    if pumping.asked:
        return waiter.due()  # type: ignore[return-value]  # the tags are LocalMounts
    ready = waiter.arm()
    if ready:
        return ready  # type: ignore[return-value]
    pumping.waiting = True
    try:
        wait(watcher, next_deadline(pumping))
    except socket.timeout:
        pass  # a latency deadline came first
    finally:
        pumping.waiting = False
    waiter.disarm()
    return waiter.due()  # type: ignore[return-value]


def next_deadline(pumping: Pumping) -> float | None:
    """Seconds until the earliest latency deadline (None: none, sleep until rung)."""
    heap = pumping.deadlines
    while heap and heap[0][2].check_at != heap[0][0]:
        heapq.heappop(heap)  # stale: the mount was served or rescheduled since
    return max(0.0, heap[0][0] - time.monotonic()) if heap else None


def due_mounts(pumping: Pumping, rung: list[LocalMount]) -> list[LocalMount]:
    """The mounts to serve now: rung, asked, or past their deadline (and those within
    DEADLINE_SLACK after it), each once."""
    due = {id(m): m for m in rung}
    due.update(pumping.asked)
    pumping.asked.clear()
    heap, until = pumping.deadlines, time.monotonic() + DEADLINE_SLACK
    while heap and heap[0][0] <= until:
        at, _, mount = heapq.heappop(heap)
        if mount.check_at == at:
            due[id(mount)] = mount
    return list(due.values())


def serve_mount(worker: Worker, mount: LocalMount) -> None:
    """One turn of `mount`: a pass if due, then its next deadline; a pass that raises
    costs only this mount's listeners."""
    if not mount.watched:
        return  # forgotten since it was found due
    try:
        serve(worker, mount)
    except Exception:
        supervised.report("worker.pump", mount.name)
        close_all_listeners(worker, mount)


def serve(worker: Worker, mount: LocalMount) -> None:
    if mount.fresh:
        serve_fresh(worker, mount)
    now, end = time.monotonic(), mount.ring.write_seq
    if not pass_due(mount, now, end):
        return  # it was asked only for its newcomers: the others keep their deadline
    moved = end != mount.passed
    if moved or mount.urgent or mount.behind or mount.ended:
        full_pass(worker, mount, end)
    if mount.ended and (drained(mount) or now > (mount.drain_until or now)):
        close_all_listeners(worker, mount)
    elif not mount.listeners:
        listeners_gone(worker, mount)
    elif moved or mount.behind or mount.ended:
        schedule(worker.pumping, mount, now + MAX_DELAY)
    else:
        mount.check_at = None
        if not mount.idle:  # its ring stopped: the first new byte rings
            mount.idle = True
            mount.ring.set_wake_batch(IDLE_BATCH)


def full_pass(worker: Worker, mount: LocalMount, end: int) -> None:
    """A pass over every listener of `mount`, up to write_seq `end`."""
    if mount.idle:  # it moves again: batched again
        mount.idle = False
        mount.ring.set_wake_batch(MIN_BATCH)
    mount.urgent = False
    results = core.send_many(mount.ring, mount.listeners, BUDGET)
    worker.pumping.passes += 1
    mount.passed = end
    worker.pumping.waiter.passed(mount.ring, end)
    mount.behind = any(status == core.WOULD_BLOCK for _, status, _ in results)
    if results:
        drop_failed(worker, mount, results)


def schedule(pumping: Pumping, mount: LocalMount, at: float) -> None:
    mount.check_at = at
    heapq.heappush(pumping.deadlines, (at, next(pumping.order), mount))


def count_passes(worker: Worker) -> None:
    pumping = worker.pumping
    if pumping.passes:
        worker.counters.add(worker.index, "pump_passes", pumping.passes)
        pumping.passes = 0


def pass_due(mount: LocalMount, now: float, end: int) -> bool:
    """Whether `mount` needs a pass over all its listeners now: it ended or was kicked, it
    has no deadline pending (idle, or never served), its deadline came, or its ring
    advanced a wake batch. Not merely because listeners arrived: with 250 arrivals a
    second that re-sent to every listener 250 times a second (10,000 real-time listeners
    then failed to get their heads in time)."""
    if mount.urgent or mount.ended or mount.check_at is None:
        return True
    return now >= mount.check_at - DEADLINE_SLACK or end - mount.passed >= MIN_BATCH


def serve_fresh(worker: Worker, mount: LocalMount) -> None:
    """A pass over just the listeners that arrived since the last pass, for a short time to
    first byte. A full pass per arrival would re-send to every listener while a crowd
    arrives; these join the batched passes from the next one on."""
    fresh = [l for l in mount.fresh if not info_of(l).closed]
    mount.fresh.clear()
    results = core.send_many(mount.ring, fresh, BUDGET)
    worker.pumping.passes += 1
    if any(status == core.WOULD_BLOCK for _, status, _ in results):
        mount.behind = True
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
    mount.fresh.clear()
    publish_count(worker, mount)
    listeners_gone(worker, mount)


def listeners_gone(worker: Worker, mount: LocalMount) -> None:
    """If `mount` has no listener left here, its ring stops ringing this worker, and an
    ended mount is forgotten."""
    if mount.listeners:
        return
    worker.unwatch(mount)
    if mount.ended:
        worker.forget_mount(mount)


def kill_listener(worker: Worker, mount_name: str, client_id: int) -> bool:
    """Close connection `client_id` if it listens to `mount_name` here; whether it did."""
    local = worker.mounts.get(mount_name)
    match = [l for l in local.listeners if info_of(l).conn.id == client_id] if local else []
    if local is None or not match:
        return False
    local.listeners.remove(match[0])
    close_listener(worker, local, match[0])
    publish_count(worker, local)
    listeners_gone(worker, local)
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
    if src is None or dst is None:
        return 0
    return move_between(worker, src, dst, chosen, retries)


def move_between(worker: Worker, src: LocalMount, dst: LocalMount, chosen: set[int],
                 retries: int) -> int:
    """`move_listeners` for mounts in hand (a fallback file's is in no `worker.mounts`)."""
    if dst.ended or not same_format(src, dst):
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
    listeners_gone(worker, src)
    dst.urgent = True
    start_pump(worker, dst)
    waiting = {key for key, tail in tails.items() if tail is None}
    if waiting and retries:
        supervised.spawn_later(MOVE_RETRY_DELAY, "worker.move", move_between, worker, src, dst,
                               waiting, retries - 1)
    return len(moving)


def same_format(src: LocalMount, dst: LocalMount) -> bool:
    """Whether listeners of `src` may go to `dst`: the same ingest format and, but for Ogg,
    the same Content-Type (any Ogg stream may follow another, as for 2.4.4: the listener
    gets the new link's header pages; an application/ogg mount may fall back to a webroot
    file that mime.types calls audio/ogg)."""
    return bool(src.ring.fmt == dst.ring.fmt
                and (src.is_ogg or src.info.content_type == dst.info.content_type))


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
