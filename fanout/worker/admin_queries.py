"""The cross-worker half of the admin commands: what each worker does when asked.

A listener or a source lives on exactly one worker, which alone owns its socket, so
/admin/listclients, killclient, killsource and moveclients are gathers: the worker that
took the request asks every worker (itself included) and combines their answers. So is
the listener-authentication check for users already listening (`auth_users`).
Killing happens on the owning worker, between two sender passes (same hub, so a pass
never sees a half-removed listener).
"""
from __future__ import annotations

import socket
import time
from contextlib import contextmanager
from typing import Any, Iterator

from fanout import supervised
from fanout.model.ogg import page_length
from fanout.protocol.stats_xml import ListedClient
from fanout.worker.connection import Connection
from fanout.worker.stats import observe_listener_count
from fanout.worker.worker import query

# mount -> the source connection this worker serves on it.
_sources: dict[str, Connection] = {}


@contextmanager
def source_registered(mount: str, conn: Connection) -> Iterator[None]:
    """Make the source on `mount` reachable for /admin/killsource while it streams."""
    _sources[mount] = conn
    try:
        yield
    finally:
        if _sources.get(mount) is conn:
            del _sources[mount]


@query("list_clients")
def list_clients(worker: Any, mount: str) -> list[ListedClient]:
    local = worker.mounts.get(mount)
    if local is None:
        return []
    now = time.time()
    return [ListedClient(l.tag.conn.ip, l.tag.user_agent, int(now - l.tag.connected_at),
                         l.tag.conn.id) for l in local.listeners]


@query("auth_users")
def auth_users(worker: Any, mount: str, exclude: int) -> list[str]:
    """The users listening to `mount` here by listener authentication, but connection
    `exclude` (the one asking): the duplicate-login check (`listener_auth`)."""
    from fanout.worker.listener_auth import SESSIONS

    return SESSIONS.users_on(mount, exclude)


@query("kill_client")
def kill_client(worker: Any, mount: str, id: int) -> bool:
    from fanout.worker.listeners import close_listener, publish_count

    local = worker.mounts.get(mount)
    match = [l for l in local.listeners if l.tag.conn.id == id] if local else []
    if not match:
        return False
    local.listeners.remove(match[0])
    close_listener(worker, local, match[0])
    publish_count(worker, local)
    return True


@query("kill_source")
def kill_source(worker: Any, mount: str) -> bool:
    conn = _sources.get(mount)
    if conn is None:
        return False
    # Shut the connection down through a duplicate descriptor: the source's pending read
    # then sees end of stream and leaves the usual way (release, log line). gevent's own
    # shutdown() would instead fail that read as "closed in another greenlet".
    try:
        with socket.fromfd(conn.sock.fileno(), socket.AF_INET, socket.SOCK_STREAM) as dup:
            dup.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    return True


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


@query("move_clients")
def move_clients(worker: Any, mount: str, destination: str) -> int:
    """Move this worker's listeners of `mount` to `destination`; how many moved at once.

    They keep their socket and ICY framing and continue at the destination's burst
    point. An Ogg listener first gets the rest of the page it is partway through, then
    the destination's header pages; one whose page is not whole in the ring yet is moved
    a moment later (see move_listeners)."""
    src = worker.mounts.get(mount)
    chosen = {id(l) for l in src.listeners} if src else set()
    return move_listeners(worker, mount, destination, chosen, MOVE_RETRIES)


def move_listeners(worker: Any, mount: str, destination: str, chosen: set[int],
                   retries: int) -> int:
    from fanout.worker.listeners import publish_count

    src, dst = worker.mounts.get(mount), worker.mounts.get(destination)
    if src is None or dst is None or dst.ended or not same_format(src, dst):
        return 0
    tails = {id(l): _page_tail(src, l) if dst.is_ogg else b""
             for l in src.listeners if id(l) in chosen}
    moving = [l for l in src.listeners if tails.get(id(l)) is not None]
    src.listeners[:] = [l for l in src.listeners if tails.get(id(l)) is None]
    # Not yet served on the source mount: it must not be, now that it moves.
    src.fresh[:] = [l for l in src.fresh if tails.get(id(l)) is None]
    dst.listeners.extend(_moved(worker, src, dst, l, tails[id(l)] or b"") for l in moving)
    publish_count(worker, src)
    publish_count(worker, dst)
    observe_listener_count(dst)
    _ensure_pump(worker, dst)
    waiting = {key for key, tail in tails.items() if tail is None}
    if waiting and retries:
        supervised.spawn_later(MOVE_RETRY_DELAY, "worker.move", move_listeners, worker, mount,
                               destination, waiting, retries - 1)
    return len(moving)


def same_format(src: Any, dst: Any) -> bool:
    return bool(src.ring.fmt == dst.ring.fmt
                and src.info.content_type == dst.info.content_type)


def _page_tail(src: Any, listener: Any) -> bytes | None:
    """The rest of the Ogg page `listener` is partway through (b"" at a page start); None
    while its head is still being sent or that page is not whole in the ring.

    Pages are walked from a sync point (a page start the writer recorded) at or before the
    listener's position: a capture pattern alone could sit inside a packet."""
    from fanout import core

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


def _moved(worker: Any, src: Any, dst: Any, listener: Any, tail: bytes) -> Any:
    from fanout import core
    from fanout.worker.listeners import lag_limit, start_point

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


def _ensure_pump(worker: Any, mount: Any) -> None:
    from fanout.worker.listeners import start_pump

    mount.urgent = True
    start_pump(worker, mount)
