"""The soak: a long run with churn, metadata updates and killed workers.

Theory of operation. ``run_soak`` starts a server of its own, feeds ``mounts``
sources that reconnect when their connection breaks, and runs one swarm over all the
mounts for the step's duration: listeners ask for ICY metadata, ``churn_rate``
connections a second are closed and opened anew, and a listener the server drops (or
refuses, while its mount is down) reconnects after ``RECONNECT_AFTER``. Meanwhile:

* ``MetadataUpdater`` (a thread) updates each mount's title through
  ``/admin/metadata`` every ``metadata_interval``, the mounts spread over it;
* ``SoakFaults`` (called at every sample of ``runner.measure``) SIGKILLs the youngest
  worker every ``kill_interval`` (a server with two workers or more; none so late
  that its effect would not be seen). The oldest worker and the supervisor then live
  through the whole soak, so their memory curves show leaks, while the supervisor
  replaces a worker every interval. The listeners the server drops within the
  settling time of a kill (``KILL_SETTLE``, or up to the next kill) are counted as
  cut by it; the swarm keeps the verification errors of every connection the server
  closed apart (``cut_errors``), so the bar — no error on listeners that were not
  on the killed worker — reads ``errors - cut_errors == 0``;
* ``SoakFaults`` also samples each process's RSS every ``rss_interval``; the report
  gives the least-squares slope per role in MB/hour.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from fanout.bench import report
from fanout.bench.feeder import Feeder
from fanout.bench.measure import ServerMonitor
from fanout.bench.progress import Display
from fanout.bench.runner import (
    Endpoint, Measurement, StepResult, failed_steps, measure, repeat_step, run_steps,
    source_specs, wait_for_mounts,
)
from fanout.bench.scenarios import Scenario, Step
from fanout.bench.servers import start_server
from fanout.bench.serving import ServerProcess, ServerStartError, http_get
from fanout.bench.swarm import SwarmProgress

MOUNT_PREFIX = "/soak"
RECONNECT_AFTER = 1.0  # s before a dropped or refused listener tries again, as a player does
KILL_SETTLE = 5.0  # s after a kill within which the server's drops are counted as its cut
ADMIN_USER = "admin"  # the bench's generated config (icecast.render_icecast_xml)


@dataclass(slots=True)
class MetadataUpdater:
    """A thread updating the mounts' titles in turn through ``/admin/metadata``."""

    server: ServerProcess
    mounts: list[str]
    interval: float  # s between two updates of one mount
    accepted: int = 0
    refused: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="bench-metadata", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        k = 0
        while not self._stop.wait(self.interval / len(self.mounts)):
            mount = self.mounts[k % len(self.mounts)]
            self.update(mount, f"soak {mount} update {k // len(self.mounts)}")
            k += 1

    def update(self, mount: str, title: str) -> None:
        target = f"/admin/metadata?mount={quote(mount)}&mode=updinfo&song={quote(title)}"
        status, _ = http_get(self.server.host, self.server.port, target, ADMIN_USER,
                             self.server.admin_password)
        if status == 200:
            self.accepted += 1
        else:
            self.refused += 1


@dataclass(slots=True)
class SoakFaults:
    """The kills and memory samples of a soak, driven by the run's sampling loop."""

    monitor: ServerMonitor
    kill_interval: float
    rss_interval: float
    duration: float  # s: no kill so late that its settling time would not be seen
    t_start: float = field(default_factory=time.monotonic)
    kills: int = 0
    cut_by_kills: int = 0
    rss: dict[int, list[tuple[float, int]]] = field(default_factory=dict)  # pid -> (s, bytes)
    rss_total: list[tuple[float, int]] = field(default_factory=list)
    _next_kill: float = 0.0
    _next_rss: float = 0.0
    _settling: list[tuple[float, int]] = field(default_factory=list)  # (until, dropped at the kill)

    def __post_init__(self) -> None:
        self._next_kill = self.kill_interval if self.kill_interval > 0 else float("inf")

    @property
    def settle(self) -> float:
        """s after a kill within which the server's drops are its cut."""
        return min(KILL_SETTLE, self.kill_interval)

    def on_sample(self, progress: SwarmProgress) -> None:
        now = time.monotonic() - self.t_start
        if now >= self._next_rss:
            self._sample_rss(now)
            self._next_rss += self.rss_interval
        if now >= self._next_kill and now + self.settle <= self.duration:
            self._kill_youngest_worker(now, progress.dropped)
            self._next_kill += self.kill_interval
        self._settle(now, progress.dropped)

    def _sample_rss(self, now: float) -> None:
        by_pid = self.monitor.rss_by_process()
        for pid, rss in by_pid.items():
            self.rss.setdefault(pid, []).append((now, rss))
        self.rss_total.append((now, sum(by_pid.values())))

    def _kill_youngest_worker(self, now: float, dropped: int) -> None:
        workers = self.monitor.children()
        if len(workers) < 2:
            return  # no workers (Icecast), or only one: killing it is an outage, not a fault
        try:
            os.kill(workers[-1].pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        self.kills += 1
        self._settle(now, dropped, final=True)  # a window ends at the next kill: no drop counts twice
        self._settling.append((now + self.settle, dropped))

    def _settle(self, now: float, dropped: int, final: bool = False) -> None:
        for window in [w for w in self._settling if final or now >= w[0]]:
            self.cut_by_kills += dropped - window[1]
            self._settling.remove(window)

    def figures(self, totals: dict[str, Any] | None) -> dict[str, Any]:
        self._settle(0.0, (totals or {}).get("dropped", 0), final=True)
        root = self.monitor.pid
        workers = [pid for pid in self.rss if pid != root]
        longest = max(workers, key=lambda pid: len(self.rss[pid]), default=None)
        return {
            "kills": self.kills, "cut_by_kills": self.cut_by_kills,
            "rss_slope_main_mb_h": report.rss_slope(self.rss.get(root, [])),
            "rss_slope_worker_mb_h": None if longest is None else report.rss_slope(self.rss[longest]),
            "rss_slope_total_mb_h": report.rss_slope(self.rss_total),
            "rss_samples": {str(pid): samples for pid, samples in self.rss.items()},
        }


def run_soak(kind: str, scenario: Scenario, display: Display, workers: int | None = None,
             swarm_processes: int = 0) -> list[StepResult]:
    """Run ``scenario`` (kind "soak") on a fresh server of ``kind``; return its results."""
    try:
        server = start_server(kind, workers=workers)
    except ServerStartError as exc:
        display.note(f"{scenario.name}: {kind} could not be started: {exc}")
        return failed_steps(scenario, f"not started: {exc}")
    display.note(f"{scenario.name}: {kind} serving on {server.host}:{server.port} (pid {server.pid})")
    endpoint = Endpoint(kind, server.host, server.port, MOUNT_PREFIX, server.source_password,
                        pid=server.pid, fresh_mounts=False, swarm_processes=swarm_processes)
    try:
        return run_steps(scenario, lambda step: repeat_step(
            step, kind, display, lambda s, label: soak_once(server, endpoint, s, display, label)))
    finally:
        server.stop()


def soak_once(server: ServerProcess, endpoint: Endpoint, step: Step, display: Display,
              label: str) -> dict[str, Any]:
    """One soak run on ``server``; return its figures. Raises SourceRefused,
    MountNotReady, SwarmError or OSError when it cannot run."""
    mounts = endpoint.next_mounts(step.mounts)
    monitor = ServerMonitor(server.pid)
    feeder = Feeder(source_specs(endpoint, step, mounts), write_frames=step.source_write_frames,
                    reconnect=True)
    feeder.start()
    updater = MetadataUpdater(server, mounts, step.faults.metadata_interval)
    try:
        wait_for_mounts(server.host, server.port, mounts)
        if step.faults.metadata_interval > 0:
            updater.start()
        faults = SoakFaults(monitor, step.faults.kill_interval, step.faults.rss_interval,
                            step.duration)

        def extra(totals: dict[str, Any] | None) -> dict[str, Any]:
            swarm = totals or {}
            errors = sum(swarm.get("counts", {}).get(name, 0) for name in report.ERROR_COUNTERS)
            return {**faults.figures(totals), "source_reconnections": feeder.reconnections,
                    "metadata_updates": updater.accepted, "metadata_refused": updater.refused,
                    "churned": swarm.get("churned"), "reconnects": swarm.get("reconnects"),
                    "uncut_errors": errors - swarm.get("cut_errors", 0)}

        watch = Measurement(on_sample=faults.on_sample, extra_figures=extra,
                            swarm_options={"churn_rate": step.faults.churn_rate,
                                           "reconnect_after": RECONNECT_AFTER})
        return measure(endpoint, mounts, step, display, label, feeder, monitor, watch=watch)
    finally:
        updater.stop()
        feeder.stop()

