"""Public and operational endpoints: /status-json.xsl, the HTML status page at `/` and
/status.xsl (kept live by the events of `web.py`), /health and /metrics.

Hidden mounts never appear in a public answer; /metrics shows them only to a request
carrying the admin credentials. Rendering is `fanout.protocol`'s; this module gathers.
"""
from __future__ import annotations

import time

from fanout import __version__
from fanout.protocol.cluster import cluster_families, global_cluster_stats
from fanout.protocol.http import Request
from fanout.protocol.prometheus import CONTENT_TYPE as METRICS_TYPE
from fanout.protocol.prometheus import MetricFamily, render_metrics
from fanout.protocol.responses import render_text
from fanout.protocol.sse import EVENTS_PATH
from fanout.protocol.stats import (
    PUBLIC_GLOBAL_KEYS, MountFigures, Stats, global_stats, public_mount_stats,
)
from fanout.protocol.status_json import JSON_TYPE, render_health, render_status_json
from fanout.protocol.status_page import HTML_TYPE, render_status_page
from fanout.worker import stats
from fanout.worker.admin import text_param
from fanout.worker.client import Connection
from fanout.worker.credentials import is_admin
from fanout.worker.state import RequestHandler, Worker
from fanout.worker.stats import WorkerFigures, worker_figures


def send(worker: Worker, conn: Connection, body: bytes, content_type: str, status: int = 200) -> None:
    conn.send(render_text(status, body, content_type, server_id=worker.cfg.server_id,
                          now=time.time()))


def public_mounts(worker: Worker, only: str | None = None) -> list[MountFigures]:
    """The live, non-hidden mounts (just `only` when given), summed over workers."""
    return [m for m in stats.collect_mounts(worker)
            if not m.settings.hidden and (only is None or m.name == only)]


def public_stats(worker: Worker, only: str | None = None) -> list[Stats]:
    """Each public mount's stats (all of them: callers show the public keys), with its
    cluster listeners on a master that takes redirect slaves."""
    return public_view(worker, only)[0]


def public_view(worker: Worker, only: str | None = None) -> tuple[list[Stats], Stats]:
    """`public_stats`, and the cluster's global keys (none unless this server takes
    redirect slaves), from one gather."""
    mounts = public_mounts(worker)
    totals = stats.cluster(worker, mounts)
    shown = stats.stats_of(worker, [m for m in mounts if only is None or m.name == only])
    _, listed = stats.with_cluster(totals, {}, shown)
    return [s for _, s in listed], {} if totals is None else global_cluster_stats(totals)


def public_server_stats(worker: Worker, extra: Stats | None = None) -> Stats:
    """The global stats a page for anyone may show (those status-json.xsl shows), and
    `extra` (the cluster's)."""
    server = global_stats(stats.collect_server(worker))
    return {key: server[key] for key in PUBLIC_GLOBAL_KEYS} | (extra or {})


def serve_status_json(worker: Worker, conn: Connection, request: Request, leftover: bytes) -> None:
    mounts, cluster = public_view(worker, text_param(request, "mount"))
    body = render_status_json(global_stats(stats.collect_server(worker)), mounts, cluster)
    send(worker, conn, body, JSON_TYPE)


def serve_health(worker: Worker, conn: Connection, request: Request, leftover: bytes) -> None:
    """No auth and no gather: a load balancer polls this often and must get a fast answer."""
    serving = not worker.stopping.is_set()
    live = [m for m in worker.mounts.values() if not m.ended]
    body = render_health(serving, len(live), time.time() - stats.server_start())
    send(worker, conn, body, "application/json", 200 if serving else 503)


def serve_metrics(worker: Worker, conn: Connection, request: Request, leftover: bytes) -> None:
    show_hidden = is_admin(worker, request)
    mounts = [m for m in stats.collect_mounts(worker) if show_hidden or not m.settings.hidden]
    workers = sorted((w for w in worker.gather(worker_figures) if w), key=lambda w: w["index"])
    families = mount_families(mounts) + worker_families(workers) + server_families(worker, workers)
    totals = stats.cluster(worker, mounts)  # issue 12: fanout_cluster_listeners{mount,node}
    families += [] if totals is None else cluster_families(totals)
    send(worker, conn, render_metrics(families), METRICS_TYPE)


# Per-mount metrics: name, type, help, and the MountFigures field it shows.
MOUNT_METRICS = (
    ("fanout_mount_listeners", "gauge", "Listeners connected, all workers", "listeners"),
    ("fanout_mount_listener_peak", "gauge", "Most listeners at once since the source came",
     "listener_peak"),
    ("fanout_mount_sent_bytes_total", "counter", "Bytes sent to listeners", "bytes_sent"),
    ("fanout_mount_read_bytes_total", "counter", "Bytes read from the source", "bytes_read"),
    ("fanout_mount_slow_listeners_total", "counter", "Listeners dropped as too far behind",
     "slow_listeners"),
)


def mount_families(mounts: list[MountFigures]) -> list[MetricFamily]:
    families = [MetricFamily(name, kind, text) for name, kind, text, _ in MOUNT_METRICS]
    connected = MetricFamily("fanout_mount_source_connected", "gauge",
                             "1 while a source or a streaming relay feeds it")
    for mount in mounts:
        for family, (*_, field) in zip(families, MOUNT_METRICS):
            family.add(getattr(mount, field), mount=mount.name)
        streaming = mount.relay is None or mount.relay.state == "streaming"
        connected.add(1 if streaming else 0, mount=mount.name)
    return families + [connected] + relay_families([m for m in mounts if m.relay is not None])


def relay_families(mounts: list[MountFigures]) -> list[MetricFamily]:
    info = MetricFamily("fanout_relay_info", "gauge", "A relayed mount: its upstream and state")
    reconnects = MetricFamily("fanout_relay_reconnects_total", "counter",
                              "Times the relay reconnected to its upstream")
    read = MetricFamily("fanout_relay_read_bytes_total", "counter", "Bytes read from the upstream")
    for mount in mounts:
        assert mount.relay is not None
        info.add(1, mount=mount.name, upstream=mount.relay.upstream, state=mount.relay.state)
        reconnects.add(mount.relay.reconnects, mount=mount.name)
        read.add(mount.relay.bytes_read, mount=mount.name)
    return [info, reconnects, read]


def worker_families(workers: list[WorkerFigures]) -> list[MetricFamily]:
    connections = MetricFamily("fanout_worker_connections", "gauge", "Open client connections")
    cpu = MetricFamily("fanout_worker_cpu_seconds_total", "counter", "CPU time used (user + system)")
    rss = MetricFamily("fanout_worker_resident_memory_bytes", "gauge", "Resident set size")
    for w in workers:
        label = str(w["index"])
        connections.add(w["connections"], worker=label)
        cpu.add(w["cpu"], worker=label)
        rss.add(w["rss"], worker=label)
    return [connections, cpu, rss]


def server_families(worker: Worker, workers: list[WorkerFigures]) -> list[MetricFamily]:
    uptime = MetricFamily("fanout_uptime_seconds", "gauge", "Seconds since the server started")
    uptime.add(time.time() - stats.server_start())
    accepted = MetricFamily("fanout_connections_accepted_total", "counter", "Connections accepted")
    accepted.add(worker.counters.total("accepted"))
    refused = MetricFamily("fanout_requests_refused_total", "counter",
                           "Connections refused or answered with an error, by reason")
    reasons: dict[str, int] = {"client_limit": worker.counters.total("refused")}
    for w in workers:
        for reason, count in w["refusals"].items():
            reasons[reason] = reasons.get(reason, 0) + count
    for reason, count in sorted(reasons.items()):
        refused.add(count, reason=reason)
    passes = MetricFamily("fanout_pump_passes_total", "counter",
                          "Sender passes of the workers' pumps (none while nothing is to send)")
    passes.add(worker.counters.total("pump_passes"))
    return [uptime, accepted, refused, passes, internal_errors_family(worker)]


def internal_errors_family(worker: Worker) -> MetricFamily:
    """Every process's internal errors (fanout.supervised), summed from the shared counters,
    so a hung or replaced worker's count is not lost."""
    errors = MetricFamily("fanout_internal_errors_total", "counter",
                          "Unexpected exceptions, logged with a traceback, by unit")
    for where, count in worker.counters.internal_errors().items():
        errors.add(count, where=where)
    return errors


def serve_status_page(worker: Worker, conn: Connection, request: Request, leftover: bytes) -> None:
    """The product page: every public mount, kept current by the events at EVENTS_PATH."""
    mounts, cluster = public_view(worker)
    page = render_status_page(worker.cfg.server_id, [public_mount_stats(s) for s in mounts],
                              server=public_server_stats(worker, cluster), version=__version__,
                              events=EVENTS_PATH)
    send(worker, conn, page, HTML_TYPE)


# Path -> handler, for the paths `connection.route` serves here instead of a mount.
PAGES: dict[str, RequestHandler] = {
    "/": serve_status_page,
    "/status.xsl": serve_status_page,
    "/status-json.xsl": serve_status_json,
    "/health": serve_health,
    "/metrics": serve_metrics,
}
