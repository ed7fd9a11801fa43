"""Running scenarios against one server: sources, swarm and measurements together.

``run_once`` is one run of a step: start the feeder on the step's mounts, wait until
they serve, then ``measure``: start the swarm (listeners spread over the mounts),
sample the server's CPU and RSS until the swarm reports (or, without listeners, for
the step's duration), and return the figures. ``run_scenario`` repeats each step
``runs`` times and keeps every run plus the median; a scenario marked
``until_degraded`` stops at the first step that lost listeners or data. Relay and
soak scenarios (``relay.py``, ``soak.py``) set their servers up differently and use
``measure`` and ``run_steps`` from here.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fanout.bench import report
from fanout.bench.feeder import Feeder, SourceRefused, SourceSpec
from fanout.bench.measure import ServerMonitor
from fanout.bench.progress import Display
from fanout.bench.scenarios import Scenario, Step
from fanout.bench.serving import http_status
from fanout.bench.swarm import SwarmError, SwarmProgress, SwarmRun, SwarmSpec

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
    """A server to run against; ``fresh_mounts`` gives each run its own mounts."""

    label: str
    host: str
    port: int
    mount: str
    source_password: str
    pid: int | None = None
    fresh_mounts: bool = True
    swarm_processes: int = 0
    listen_port: int | None = None  # --tls: where the swarm connects (the TLS proxies)
    _serial: itertools.count = field(default_factory=lambda: itertools.count(1))

    def next_mounts(self, count: int) -> list[str]:
        """Return ``count`` mount names for the next run."""
        if self.fresh_mounts:
            return [f"{self.mount}-{next(self._serial)}" for _ in range(count)]
        return [self.mount] if count == 1 else [f"{self.mount}-{k}" for k in range(1, count + 1)]


@dataclass(slots=True)
class StepResult:
    step: Step
    runs: list[dict[str, Any]]
    median: dict[str, Any] | None
    error: str | None = None


class MountNotReady(RuntimeError):
    """A mount did not serve listeners after its source connected."""


def mounts_serving(host: str, port: int, mounts: list[str], timeout: float) -> list[str]:
    """Return the mounts that answer ``GET`` with 200 within ``timeout`` s (all of them,
    unless some never do). Each round asks only the mounts that did not answer yet."""
    deadline = time.monotonic() + timeout
    waiting = list(mounts)
    while True:
        waiting = [m for m in waiting if http_status(host, port, m) != 200]
        if not waiting or time.monotonic() > deadline:
            return [m for m in mounts if m not in set(waiting)]
        time.sleep(POLL_INTERVAL)  # polling a condition with a deadline


def wait_for_mounts(host: str, port: int, mounts: list[str],
                    timeout: float = MOUNT_READY_TIMEOUT) -> None:
    """Return once every mount answers 200; raise MountNotReady after ``timeout``."""
    served = mounts_serving(host, port, mounts, timeout)
    if len(served) < len(mounts):
        missing = [m for m in mounts if m not in served]
        raise MountNotReady(f"{len(missing)} mount(s), e.g. {missing[0]}, do not answer 200 "
                            f"{timeout:.0f} s after their sources connected")


def wait_for_mount(host: str, port: int, mount: str, timeout: float = MOUNT_READY_TIMEOUT) -> None:
    """``wait_for_mounts`` for one mount."""
    wait_for_mounts(host, port, [mount], timeout)


def swarm_spec(endpoint: Endpoint, step: Step, mounts: list[str], **extra: Any) -> SwarmSpec:
    return SwarmSpec(host=endpoint.host, port=endpoint.listen_port or endpoint.port,
                     path=mounts[0] if len(mounts) == 1 else tuple(mounts),
                     listeners=step.total_listeners, duration=step.duration,
                     arrival_rate=step.arrival_rate, read_rate=step.read_rate,
                     prebuffer=PLAYER_BUFFER if step.read_rate else 0,
                     read_interval=PLAYER_READ_INTERVAL, icy=step.icy,
                     processes=endpoint.swarm_processes, **extra)


def source_specs(endpoint: Endpoint, step: Step, mounts: list[str]) -> list[SourceSpec]:
    return [SourceSpec(endpoint.host, endpoint.port, mount, endpoint.source_password,
                       bitrate=step.source_bitrate) for mount in mounts]


@dataclass(slots=True)
class Measurement:
    """What ``measure`` watches besides the swarm: a hook called at every sample (the
    soak's faults) and the figures it adds."""

    on_sample: Callable[[SwarmProgress], None] | None = None
    extra_figures: Callable[[dict[str, Any] | None], dict[str, Any]] | None = None
    swarm_options: dict[str, Any] = field(default_factory=dict)


def run_once(endpoint: Endpoint, step: Step, display: Display, label: str) -> dict[str, Any]:
    """Run ``step`` once against ``endpoint``; return its figures.

    Raises SourceRefused, MountNotReady, SwarmError or OSError when the run cannot happen.
    """
    mounts = endpoint.next_mounts(step.mounts)
    monitor = ServerMonitor(endpoint.pid) if endpoint.pid else None
    feeder = Feeder(source_specs(endpoint, step, mounts), write_frames=step.source_write_frames)
    feeder.start()
    try:
        wait_for_mounts(endpoint.host, endpoint.port, mounts)
        # No memory per mount here: the server served earlier runs, whose memory it may
        # or may not have given back (the relay scenarios measure it on a fresh slave).
        return measure(endpoint, mounts, step, display, label, feeder, monitor)
    finally:
        stats = feeder.stop()
        if stats.error:
            display.note(f"{label}: a source connection ended early: {stats.error}")


def measure(endpoint: Endpoint, mounts: list[str], step: Step, display: Display, label: str,
            feeder: Feeder, monitor: ServerMonitor | None, pss_before: int | None = None,
            mounts_served: int | None = None, watch: Measurement | None = None) -> dict[str, Any]:
    """Run the swarm on ``mounts`` (or, without listeners, just wait the step's duration)
    while sampling the server; return the run's figures. Raises SwarmError, OSError."""
    watch = watch or Measurement()
    totals: dict[str, Any] | None = None
    if step.total_listeners:
        with SwarmRun(swarm_spec(endpoint, step, mounts, **watch.swarm_options)) as swarm:
            window = _Window(monitor, feeder)  # opens once the swarm's children are ready
            swarm.go()
            display.begin(label, step.duration)
            window.steady = _sample_until_done(swarm, step, monitor, display, watch)
            totals = swarm.result()
    else:
        window = _Window(monitor, feeder)
        display.begin(label, step.duration)
        _sample_for(step.duration, monitor, display, watch)
    display.end()
    return report.figures(window.close(
        swarm=totals, mounts=len(mounts), mounts_served=mounts_served, pss_before=pss_before,
        extra=watch.extra_figures(totals) if watch.extra_figures else {}))


class _Window:
    """The measurement window of one run: CPU, source bytes and time from its opening."""

    def __init__(self, monitor: ServerMonitor | None, feeder: Feeder) -> None:
        self.monitor, self.feeder = monitor, feeder
        self.cpu_start = monitor.start() if monitor else None
        self.mark = monitor.mark() if monitor else {}
        self.sent_start, self.t_start = feeder.bytes_sent(), time.monotonic()
        self.steady: tuple[float, float] | None = None  # (cpu, time) once all listeners are in

    def close(self, swarm: dict[str, Any] | None, mounts: int, mounts_served: int | None,
              pss_before: int | None, extra: dict[str, Any]) -> report.RunMeasures:
        monitor, steady = self.monitor, self.steady
        cpu_end = monitor.sample() if monitor else None
        return report.RunMeasures(
            swarm=swarm, seconds=time.monotonic() - self.t_start,
            server_cpu_seconds=(None if self.cpu_start is None or cpu_end is None
                                else cpu_end - self.cpu_start),
            server_rss_bytes=monitor.rss_peak if monitor else None,
            source_bytes=self.feeder.bytes_sent() - self.sent_start,
            steady_cpu_seconds=None if steady is None or cpu_end is None else cpu_end - steady[0],
            steady_seconds=None if steady is None else time.monotonic() - steady[1],
            cpu_split=monitor.split(self.mark) if monitor else None, mounts=mounts,
            mounts_served=mounts if mounts_served is None else mounts_served,
            sources_connected=self.feeder.connected(), pss_before=pss_before,
            pss_after=monitor.pss() if monitor else None, extra=extra)


def _sample_until_done(swarm: SwarmRun, step: Step, monitor: ServerMonitor | None,
                       display: Display, watch: Measurement) -> tuple[float, float] | None:
    """Sample until the swarm reports; return (cpu, time) at the first sample at which
    every arrival had settled (established or failed): the steady state, measured with
    however many listeners the server kept (None if never)."""
    steady: tuple[float, float] | None = None
    while not swarm.wait_done(SAMPLE_INTERVAL):
        progress = swarm.progress()
        cpu_now = monitor.sample() if monitor else None
        settled = progress.established + progress.failed
        if steady is None and cpu_now is not None and settled >= step.total_listeners:
            steady = (cpu_now, time.monotonic())
        if watch.on_sample:
            watch.on_sample(progress)
        display.update(progress)
    return steady


def _sample_for(seconds: float, monitor: ServerMonitor | None, display: Display,
                watch: Measurement) -> None:
    t_start = time.monotonic()
    while (elapsed := time.monotonic() - t_start) < seconds:
        time.sleep(min(SAMPLE_INTERVAL, seconds - elapsed))  # the sampling period
        if monitor:
            monitor.sample()
        progress = SwarmProgress(elapsed=time.monotonic() - t_start)
        if watch.on_sample:
            watch.on_sample(progress)
        display.update(progress)


RunOnce = Callable[[Step, str], dict[str, Any]]


def run_step(endpoint: Endpoint, step: Step, display: Display) -> StepResult:
    """Run ``step`` its number of times against ``endpoint``; return every run and the median."""
    return repeat_step(step, endpoint.label, display,
                       lambda s, label: run_once(endpoint, s, display, label))


def repeat_step(step: Step, server_label: str, display: Display, once: RunOnce) -> StepResult:
    """Call ``once`` for each run of ``step``; return every run and the median, or the
    error that stopped the step."""
    runs = []
    for k in range(step.runs):
        label = f"{server_label} {step.name} run {k + 1}/{step.runs}"
        try:
            runs.append(once(step, label))
        except (SourceRefused, MountNotReady, SwarmError, OSError) as exc:
            display.note(f"{label}: failed: {exc}")
            return StepResult(step, runs, None, f"{type(exc).__name__}: {exc}")
    return StepResult(step, runs, report.median_figures(runs))


def run_steps(scenario: Scenario, step_runner: Callable[[Step], StepResult]) -> list[StepResult]:
    """Run every step of ``scenario`` (stopping early for ``until_degraded`` ones)."""
    results = []
    for step in scenario.steps:
        result = step_runner(step)
        results.append(result)
        if result.error or (scenario.until_degraded and report.degraded(result.median or {})):
            break
    return results


def run_scenario(endpoint: Endpoint, scenario: Scenario, display: Display) -> list[StepResult]:
    """Run every step of ``scenario`` against ``endpoint``."""
    return run_steps(scenario, lambda step: run_step(endpoint, step, display))


def failed_steps(scenario: Scenario, error: str) -> list[StepResult]:
    """Return a result per step of ``scenario`` that could not run because of ``error``."""
    return [StepResult(step, [], None, error) for step in scenario.steps]
