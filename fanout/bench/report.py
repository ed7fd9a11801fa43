"""The figures of a run, their median over runs, and the comparison table (pure).

``figures`` turns what one run measured (``RunMeasures``) into the named figures of
``FIGURES``; ``median_figures`` takes the median of each over the runs of a step;
``render_table`` prints one block per step with a column per server and, when both
fanout and Icecast ran, their ratio; a figure no server has in a block is left out.
``rss_slope`` is the least-squares slope of a soak's memory samples.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from fanout.bench import payload

MB = 1_000_000
GB = 1_000_000_000
KIB = 1024
HOUR = 3600.0

# key, label, decimals: the figures in report order
FIGURES: tuple[tuple[str, str, int], ...] = (
    ("mounts", "mounts", 0),
    ("mounts_served", "mounts serving listeners when the run started", 0),
    ("sources_connected", "sources connected at the end", 0),
    ("established", "listeners established", 0),
    ("held", "listeners held at the end", 0),
    ("failed", "listeners failed", 0),
    ("pending", "listeners still connecting at the end", 0),
    ("dropped", "listeners dropped by the server", 0),
    ("ttfb_socket_p50_ms", "time to first body byte from socket creation p50 (ms)", 1),
    ("ttfb_socket_p99_ms", "time to first body byte from socket creation p99 (ms)", 1),
    ("connect_p99_ms", "  socket creation to TCP connected p99 (ms)", 1),
    ("head_p99_ms", "  socket creation to the 200 head read p99 (ms)", 1),
    ("ttfb_loop_p99_ms", "  the same TTFB p99 on the swarm's loop clock, as measured before (ms)", 1),
    ("open_lag_p99_ms", "  swarm lag, scheduled arrival to socket creation p99 (ms)", 1),
    ("latency_p50_ms", "source→listener latency p50 (ms)", 1),
    ("latency_p99_ms", "source→listener latency p99 (ms)", 1),
    ("stalls", "stalls (no data > 1 s)", 0),
    ("verified_bytes", "verified bytes", 0),
    ("errors", "verification errors", 0),
    ("cut_errors", "  of which on connections the server cut", 0),
    ("uncut_errors", "  of which on connections it did not cut (the soak's bar: 0)", 0),
    ("delivered_mb_s", "delivered MB/s", 2),
    ("source_mb_s", "source MB/s", 3),
    ("server_cpu_pct", "server CPU (% of a core)", 1),
    ("supervisor_cpu_pct", "  supervisor alone (% of a core)", 1),
    ("workers_cpu_pct", "  workers (% of a core)", 1),
    ("steady_cpu_pct", "server CPU once all listeners are in (% of a core)", 1),
    ("steady_s", "seconds measured with all listeners in", 1),
    ("server_cpu_s_per_gb", "server CPU-seconds per GB", 2),
    ("server_rss_mb", "server RSS peak, summed over processes (MB)", 1),
    ("server_pss_mb", "server memory at the end, PSS (MB; shared rings counted once)", 1),
    ("pss_per_mount_kib", "memory per mount: PSS growth over the run / mounts (KiB)", 0),
    ("swarm_cpu_pct", "swarm CPU (% of a core)", 1),
    # soak
    ("kills", "workers SIGKILLed", 0),
    ("cut_by_kills", "listeners cut within a kill's settling time", 0),
    ("churned", "listener connections churned (closed, opened anew)", 0),
    ("reconnects", "listener reconnections after a drop or failure", 0),
    ("source_reconnections", "source reconnections", 0),
    ("metadata_updates", "metadata updates accepted", 0),
    ("metadata_refused", "metadata updates refused or failed", 0),
    ("rss_slope_main_mb_h", "RSS slope, main process / supervisor (MB/hour)", 2),
    ("rss_slope_worker_mb_h", "RSS slope, longest-lived worker (MB/hour)", 2),
    ("rss_slope_total_mb_h", "RSS slope, all processes summed (MB/hour)", 2),
)
FIGURE_KEYS = tuple(key for key, _, _ in FIGURES)
ERROR_COUNTERS = ("corrupt_frames", "gaps", "duplicates", "icy_errors")
RATIO_PAIR = ("fanout", "icecast")


@dataclass(frozen=True, slots=True)
class CpuSplit:
    """CPU-seconds of a process tree in a window: its root and its other processes."""

    total: float
    root: float
    children: float
    has_children: bool  # the tree had other processes (fanout's workers; Icecast has none)


@dataclass(frozen=True, slots=True)
class RunMeasures:
    """What one run measured; server figures are None when its process is unknown."""

    swarm: dict[str, Any] | None  # merged swarm totals (swarm.merge_results); None: no listeners
    seconds: float  # wall time of the measurement window
    server_cpu_seconds: float | None
    server_rss_bytes: int | None
    source_bytes: int
    # CPU-seconds and wall seconds from the moment every listener was established to the
    # end: the steady state, without the arrival of the listeners (None if never reached).
    steady_cpu_seconds: float | None = None
    steady_seconds: float | None = None
    cpu_split: CpuSplit | None = None
    mounts: int = 1
    mounts_served: int | None = None
    sources_connected: int | None = None
    pss_before: int | None = None  # bytes, before this run's sources connected
    pss_after: int | None = None  # bytes, at the end of the run
    extra: dict[str, Any] = field(default_factory=dict)  # figures of special runs (soak)


def _ms(hist: list[int], fraction: float) -> float | None:
    value = payload.hist_percentile(hist, fraction)
    return None if value is None else value / 1000


def figures(m: RunMeasures) -> dict[str, Any]:
    """Return the figures of one run, keyed as in FIGURE_KEYS (plus error details)."""
    cpu = m.server_cpu_seconds
    out: dict[str, Any] = dict.fromkeys(FIGURE_KEYS)
    out.update({
        "mounts": m.mounts, "mounts_served": m.mounts_served,
        "sources_connected": m.sources_connected,
        "source_mb_s": m.source_bytes / MB / max(m.seconds, 1e-9),
        "server_cpu_pct": None if cpu is None else 100 * cpu / m.seconds,
        "steady_cpu_pct": (None if m.steady_cpu_seconds is None or not m.steady_seconds
                           else 100 * m.steady_cpu_seconds / m.steady_seconds),
        "steady_s": m.steady_seconds,
        "server_rss_mb": None if m.server_rss_bytes is None else m.server_rss_bytes / MB,
        "server_pss_mb": None if m.pss_after is None else m.pss_after / MB,
        "pss_per_mount_kib": (None if m.pss_after is None or m.pss_before is None
                              else (m.pss_after - m.pss_before) / KIB / m.mounts),
    })
    if m.cpu_split is not None and m.cpu_split.has_children:
        out["supervisor_cpu_pct"] = 100 * m.cpu_split.root / m.seconds
        out["workers_cpu_pct"] = 100 * m.cpu_split.children / m.seconds
    if m.swarm is not None:
        out.update(_listener_figures(m))
    out.update(m.extra)
    return out


def _listener_figures(m: RunMeasures) -> dict[str, Any]:
    assert m.swarm is not None
    counts = m.swarm["counts"]
    seconds = max(m.swarm.get("elapsed") or m.seconds, 1e-9)
    delivered = counts["body_bytes"]
    cpu = m.server_cpu_seconds
    out: dict[str, Any] = {
        "established": m.swarm["established"],
        "held": m.swarm["held"],
        "failed": m.swarm["failed"],
        "pending": m.swarm["pending"],
        "dropped": m.swarm["dropped"],
        "ttfb_socket_p50_ms": _ms(m.swarm["ttfb_hist"], 0.50),
        "ttfb_socket_p99_ms": _ms(m.swarm["ttfb_hist"], 0.99),
        "connect_p99_ms": _ms(m.swarm["connect_hist"], 0.99),
        "head_p99_ms": _ms(m.swarm["head_hist"], 0.99),
        "ttfb_loop_p99_ms": _ms(m.swarm["ttfb_loop_hist"], 0.99),
        "open_lag_p99_ms": _ms(m.swarm["open_lag_hist"], 0.99),
        "latency_p50_ms": _ms(m.swarm["latency_hist"], 0.50),
        "latency_p99_ms": _ms(m.swarm["latency_hist"], 0.99),
        "stalls": m.swarm["stalls"],
        "verified_bytes": counts["verified_bytes"],
        "errors": sum(counts[name] for name in ERROR_COUNTERS),
        "cut_errors": m.swarm["cut_errors"],
        "delivered_mb_s": delivered / MB / seconds,
        "source_mb_s": m.source_bytes / MB / seconds,
        "server_cpu_s_per_gb": None if cpu is None or not delivered else cpu / (delivered / GB),
        "swarm_cpu_pct": 100 * m.swarm.get("cpu_seconds", 0.0) / seconds,
    }
    out["detail"] = {**{name: counts[name] for name in (*ERROR_COUNTERS, "missing_frames", "resyncs")},
                     "error_listeners": m.swarm["error_listeners"],
                     "cut_error_listeners": m.swarm["cut_error_listeners"],
                     "stall_seconds": m.swarm["stall_seconds"],
                     "churned": m.swarm["churned"], "reconnects": m.swarm["reconnects"],
                     "fail_reasons": m.swarm["fail_reasons"],
                     "status_counts": m.swarm["status_counts"]}
    return out


def rss_slope(samples: list[tuple[float, int]]) -> float | None:
    """Return the least-squares slope of (seconds, bytes) samples in MB/hour (None for
    fewer than two distinct times)."""
    if len({t for t, _ in samples}) < 2:
        return None
    mean_t = statistics.fmean(t for t, _ in samples)
    mean_b = statistics.fmean(b for _, b in samples)
    num = sum((t - mean_t) * (b - mean_b) for t, b in samples)
    den = sum((t - mean_t) ** 2 for t, _ in samples)
    return num / den * HOUR / MB


def median_figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the median of each figure over ``runs`` (None where no run has it)."""
    median: dict[str, Any] = {}
    for key in FIGURE_KEYS:
        values = [run[key] for run in runs if run.get(key) is not None]
        median[key] = statistics.median(values) if values else None
    return median


def degraded(fig: dict[str, Any]) -> bool:
    """Whether a step lost listeners or data: failed, not served in time, dropped,
    stalled or corrupted."""
    return any((fig.get(key) or 0) > 0
               for key in ("failed", "pending", "dropped", "stalls", "errors"))


def _cell(value: Any, decimals: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return f"{value:,.{decimals}f}"


def _ratio(a: Any, b: Any) -> str:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or b == 0:
        return ""
    return f"{a / b:.2f}"


def render_table(sections: list[tuple[str, dict[str, Any]]], servers: list[str]) -> str:
    """Return the comparison table.

    ``sections``: (title, {server: figures dict, or an error string}) per step.
    """
    ratio = all(s in servers for s in RATIO_PAIR)
    header = ["figure", *servers, *(["fanout/icecast"] if ratio else [])]
    rows: list[list[str]] = []
    for title, by_server in sections:
        rows.append([title])
        for key, label, decimals in FIGURES:
            if key != FIGURE_KEYS[0] and all(_figure(by_server.get(s), key) is None for s in servers):
                continue  # a figure of another kind of scenario
            cells = [_figure_cell(by_server.get(s), key, decimals) for s in servers]
            if ratio:
                cells.append(_ratio(*(_figure(by_server.get(s), key) for s in RATIO_PAIR)))
            rows.append(["  " + label, *cells])
    table = [header, *(r for r in rows if len(r) > 1)]  # step titles overhang the columns
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = [_line(header, widths), _line(["-" * w for w in widths], widths)]
    lines += [r[0] if len(r) == 1 else _line(r, widths) for r in rows]
    return "\n".join(lines)


def _figure(entry: Any, key: str) -> Any:
    return entry.get(key) if isinstance(entry, dict) else None


def _figure_cell(entry: Any, key: str, decimals: int) -> str:
    if isinstance(entry, str):
        return "error" if key == FIGURE_KEYS[0] else ""
    return _cell(_figure(entry, key), decimals) if entry is not None else "not run"


def _line(cells: list[str], widths: list[int]) -> str:
    first = cells[0].ljust(widths[0])
    return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:]))]).rstrip()
