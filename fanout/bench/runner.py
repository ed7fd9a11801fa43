"""Running scenarios against one server: source, swarm and measurements together.

``run_once`` is one run of a step: start the feeder on a mount, wait until the mount
serves, start the swarm, sample the server's CPU and RSS until the swarm reports, stop
the feeder, and return the figures. ``run_scenario`` repeats each step ``runs`` times
and keeps every run plus the median; a scenario marked ``until_degraded`` stops at the
first step that lost listeners or data.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from fanout.bench import report
from fanout.bench.feeder import Feeder, SourceRefused, SourceSpec
from fanout.bench.measure import ServerMonitor
from fanout.bench.progress import Display
from fanout.bench.scenarios import Scenario, Step
from fanout.bench.serving import http_status
from fanout.bench.swarm import SwarmError, SwarmRun, SwarmSpec

MOUNT_READY_TIMEOUT = 10.0  # s for a new source's mount to serve listeners
POLL_INTERVAL = 0.05
SAMPLE_INTERVAL = 0.5  # s between two CPU/RSS samples of the server
# Bytes a paced listener reads at once before playing in real time, as a player fills its
# buffer: the servers' burst (64 KiB by default) is then not a permanent backlog, and the
# latency figure shows the delay the server adds.
PLAYER_BUFFER = 65536
# Seconds between two reads of a paced listener. A player's decoder pulls small chunks
# often; reading only every 250 ms would itself add up to 250 ms to every latency figure.
PLAYER_READ_INTERVAL = 0.05


@dataclass(slots=True)
class Endpoint:
    """A server to run against; ``fresh_mounts`` gives each run its own mount."""

    label: str
    host: str
    port: int
    mount: str
    source_password: str
    pid: int | None = None
    fresh_mounts: bool = True
    swarm_processes: int = 0
    _serial: itertools.count = field(default_factory=lambda: itertools.count(1))

    def next_mount(self) -> str:
        return f"{self.mount}-{next(self._serial)}" if self.fresh_mounts else self.mount


@dataclass(slots=True)
class StepResult:
    step: Step
    runs: list[dict[str, Any]]
    median: dict[str, Any] | None
    error: str | None = None


class MountNotReady(RuntimeError):
    """The mount did not serve listeners after the source connected."""


def wait_for_mount(host: str, port: int, mount: str, timeout: float = MOUNT_READY_TIMEOUT) -> None:
    """Return once ``GET mount`` answers 200; raise MountNotReady after ``timeout``."""
    deadline = time.monotonic() + timeout
    while (status := http_status(host, port, mount)) != 200:
        if time.monotonic() > deadline:
            raise MountNotReady(f"{mount} answers {status} {timeout:.0f} s after the source connected")
        time.sleep(POLL_INTERVAL)  # polling a condition with a deadline


def swarm_spec(endpoint: Endpoint, step: Step, mount: str) -> SwarmSpec:
    return SwarmSpec(host=endpoint.host, port=endpoint.port, path=mount,
                     listeners=step.listeners, duration=step.duration,
                     arrival_rate=step.arrival_rate, read_rate=step.read_rate,
                     prebuffer=PLAYER_BUFFER if step.read_rate else 0,
                     read_interval=PLAYER_READ_INTERVAL, icy=step.icy,
                     processes=endpoint.swarm_processes)


def run_once(endpoint: Endpoint, step: Step, display: Display, label: str) -> dict[str, Any]:
    """Run ``step`` once against ``endpoint``; return its figures.

    Raises SourceRefused, MountNotReady, SwarmError or OSError when the run cannot happen.
    """
    mount = endpoint.next_mount()
    feeder = Feeder(SourceSpec(endpoint.host, endpoint.port, mount, endpoint.source_password,
                               bitrate=step.source_bitrate))
    feeder.start()
    try:
        wait_for_mount(endpoint.host, endpoint.port, mount)
        monitor = ServerMonitor(endpoint.pid) if endpoint.pid else None
        with SwarmRun(swarm_spec(endpoint, step, mount)) as swarm:
            cpu_start = monitor.start() if monitor else None
            sent_start, t_start = feeder.bytes_sent(), time.monotonic()
            swarm.go()
            display.begin(label, step.duration)
            # (cpu, time) once every arrival has settled (established or failed): the steady
            # state, measured with however many listeners the server kept.
            steady: tuple[float, float] | None = None
            while not swarm.wait_done(SAMPLE_INTERVAL):
                progress = swarm.progress()
                cpu_now = monitor.sample() if monitor else None
                settled = progress.established + progress.failed
                if steady is None and cpu_now is not None and settled >= step.listeners:
                    steady = (cpu_now, time.monotonic())
                display.update(progress)
            seconds = time.monotonic() - t_start
            cpu_end = monitor.sample() if monitor else None
            steady_cpu = None if steady is None or cpu_end is None else cpu_end - steady[0]
            steady_seconds = None if steady is None else time.monotonic() - steady[1]
            sent = feeder.bytes_sent() - sent_start
            display.end()
            totals = swarm.result()
    finally:
        stats = feeder.stop()
    if stats.error:
        display.note(f"{label}: the source connection ended early: {stats.error}")
    return report.figures(report.RunMeasures(
        swarm=totals, seconds=seconds,
        server_cpu_seconds=None if cpu_start is None or cpu_end is None else cpu_end - cpu_start,
        server_rss_bytes=monitor.rss_peak if monitor else None, source_bytes=sent,
        steady_cpu_seconds=steady_cpu, steady_seconds=steady_seconds))


def run_step(endpoint: Endpoint, step: Step, display: Display) -> StepResult:
    """Run ``step`` its number of times; return every run and the median."""
    runs = []
    for k in range(step.runs):
        label = f"{endpoint.label} {step.name} run {k + 1}/{step.runs}"
        try:
            runs.append(run_once(endpoint, step, display, label))
        except (SourceRefused, MountNotReady, SwarmError, OSError) as exc:
            display.note(f"{label}: failed: {exc}")
            return StepResult(step, runs, None, f"{type(exc).__name__}: {exc}")
    return StepResult(step, runs, report.median_figures(runs))


def run_scenario(endpoint: Endpoint, scenario: Scenario, display: Display) -> list[StepResult]:
    """Run every step of ``scenario`` (stopping early for ``until_degraded`` ones)."""
    results = []
    for step in scenario.steps:
        result = run_step(endpoint, step, display)
        results.append(result)
        if result.error or (scenario.until_degraded and report.degraded(result.median or {})):
            break
    return results
