"""Statistics over every worker: what /admin/stats, /status-json.xsl and /metrics show.

Theory of operation: each ring already sums what every worker publishes into it (the
listener count, the bytes sent to listeners that have left, the bytes read from the
source), so most figures are read locally. What only a worker knows — its listener peak
observations (`Worker.tallies`), its slow-listener drops, the bytes sent to listeners
still connected — is asked of every worker with one `gather(mount_figures)` per request.
"""
from __future__ import annotations

import functools
import os
import time
from typing import TypedDict

import psutil

from fanout.mountinfo import MountInfo
from fanout.protocol.stats import (
    MountFigures, MountSettings, RelayFigures, ServerFigures, Stats, mount_stats,
)
from fanout.worker.queries import query
from fanout.worker.state import LocalMount, Worker


class WorkerFigures(TypedDict):
    """One worker's own figures, for /metrics (`worker_figures`)."""

    index: int
    connections: int
    cpu: float  # seconds, user + system
    rss: int  # bytes
    refusals: dict[str, int]


@query
def mount_figures(worker: Worker) -> dict[str, tuple[int, int, int]]:
    """This worker's (listener peak seen, slow listeners dropped, bytes sent to listeners
    still connected) per mount."""
    return {name: (worker.tallies.local_peak(m), m.slow_listeners,
                   sum(l.sent for l in m.listeners))
            for name, m in worker.mounts.items() if not m.ended}


def live_mounts(worker: Worker) -> list[LocalMount]:
    """The mounts with a source, sorted by name as Icecast's stats tree (strcmp)."""
    mounts = [m for m in worker.mounts.values() if not m.ended]
    return sorted(mounts, key=lambda m: m.name.encode("utf-8", "surrogateescape"))


def collect_mounts(worker: Worker) -> list[MountFigures]:
    """Every live mount's figures, summed over all workers."""
    answers = [a for a in worker.gather(mount_figures) if a]
    return [_figures(mount, [a[mount.name] for a in answers if mount.name in a])
            for mount in live_mounts(worker)]


def _figures(mount: LocalMount, per_worker: list[tuple[int, int, int]]) -> MountFigures:
    info, ring = mount.info, mount.ring
    return MountFigures(
        name=mount.name, content_type=info.content_type, headers=info.headers,
        source_ip=info.source_ip, user_agent=info.user_agent,
        title=info.title, stream_start=info.stream_start,
        listeners=ring.listener_count(),
        listener_peak=max([ring.listener_count()] + [f[0] for f in per_worker]),
        slow_listeners=sum(f[1] for f in per_worker),
        bytes_read=ring.write_seq,
        bytes_sent=ring.bytes_sent() + sum(f[2] for f in per_worker),
        settings=mount_settings(mount), relay=relay_figures(info), artist=info.artist,
        codec=info.codec)


def relay_figures(info: MountInfo) -> RelayFigures | None:
    """The upstream side of a relayed mount, from the info its pull keeps current."""
    relay = info.relay
    if relay is None:
        return None
    return RelayFigures(upstream=relay.upstream, state=relay.state.value,
                        reconnects=relay.reconnects, bytes_read=relay.bytes_read)


def mount_settings(mount: LocalMount) -> MountSettings:
    r = mount.resolved
    return MountSettings(hidden=r.hidden, max_listeners=r.max_listeners, public=r.public,
                         stream_name=r.stream_name, stream_description=r.stream_description,
                         stream_url=r.stream_url, genre=r.genre, bitrate=r.bitrate,
                         subtype=r.subtype)


@functools.cache
def server_start() -> float:
    """When the supervisor (our parent) started: the server's start, for every worker."""
    try:
        return float(psutil.Process(os.getppid()).create_time())
    except psutil.Error:
        return time.time()


def collect_server(worker: Worker) -> ServerFigures:
    """The server's figures, as a request being answered sees them (it is not counted
    among the clients, as 2.4.4 does not count it)."""
    cfg, counters = worker.cfg, worker.counters
    return ServerFigures(
        admin=cfg.admin, host=cfg.hostname, location=cfg.location, server_id=cfg.server_id,
        server_start=server_start(), port=advertised_port(worker),
        clients=max(0, counters.total("clients") - 1), listeners=counters.total("listeners"),
        sources=counters.total("sources"),
        connections=counters.total("accepted") + counters.total("refused"),
        client_connections=counters.total("client_connections"),
        listener_connections=counters.total("listener_connections"),
        source_client_connections=counters.total("source_client_connections"),
        source_relay_connections=counters.total("source_relay_connections"),
        file_connections=counters.total("file_connections"))


@query
def worker_figures(worker: Worker) -> WorkerFigures:
    """This worker's index, open connections, CPU seconds, RSS bytes and refusals."""
    process = psutil.Process()
    cpu = process.cpu_times()
    return WorkerFigures(index=worker.index,
                         connections=worker.counters.row(worker.index)["clients"],
                         cpu=cpu.user + cpu.system, rss=process.memory_info().rss,
                         refusals=dict(worker.tallies.refusals))


def advertised_port(worker: Worker) -> int:
    """The port in `listenurl`: the first listen socket's, as bound (config port 0 lets
    the kernel choose, and a URL with port 0 would be useless)."""
    if worker.cfg.port or not worker.bound_ports:
        return int(worker.cfg.port)
    return worker.bound_ports[0]


def stats_of(worker: Worker, mounts: list[MountFigures]) -> list[tuple[str, Stats]]:
    """(mount name, its stats) for each of `mounts`, as /admin/stats shows them."""
    host, port = worker.cfg.hostname, advertised_port(worker)
    return [(m.name, mount_stats(m, host, port)) for m in mounts]
