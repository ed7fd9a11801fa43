"""The cross-worker half of the admin commands: what each worker does when asked.

A listener or a source lives on exactly one worker, which alone owns its socket, so
/admin/listclients, killclient, killsource and moveclients are gathers: the worker that
took the request asks every worker (itself included) and combines their answers.
Killing and moving happen on the owning worker, between two sender passes (same hub,
so a pass never sees a half-removed listener; `pump.py` does both).
"""
from __future__ import annotations

import socket
import time

from fanout.protocol.stats_xml import ListedClient
from fanout.worker.pump import MOVE_RETRIES, kill_listener, move_listeners
from fanout.worker.queries import query
from fanout.worker.state import Worker, info_of


@query
def list_clients(worker: Worker, mount: str) -> list[ListedClient]:
    local = worker.mounts.get(mount)
    if local is None:
        return []
    now = time.time()
    return [ListedClient(info.conn.ip, info.user_agent, int(now - info.connected_at),
                         info.conn.id) for info in map(info_of, local.listeners)]


@query
def kill_client(worker: Worker, mount: str, id: int) -> bool:
    return kill_listener(worker, mount, id)


@query
def kill_source(worker: Worker, mount: str) -> bool:
    conn = worker.sources.get(mount)
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


@query
def move_clients(worker: Worker, mount: str, destination: str) -> int:
    """Move this worker's listeners of `mount` to `destination`; how many moved at once
    (Ogg listeners partway through a page follow a moment later: `pump.move_listeners`).
    The supervisor sends it one-way too, by the name messages.MOVE_CLIENTS, for
    fallbacks and overrides."""
    src = worker.mounts.get(mount)
    chosen = {id(l) for l in src.listeners} if src else set()
    return move_listeners(worker, mount, destination, chosen, MOVE_RETRIES)

