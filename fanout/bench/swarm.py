"""The listener swarm: several processes, each running the compiled epoll loop.

Theory of operation. ``SwarmRun`` starts ``processes`` children (``python -m
fanout.bench.swarm``), each below the open-files limit of one process. A child reads
its JSON config on stdin, raises its RLIMIT_NOFILE, answers ``READY`` and waits for
``GO <t0>``: all children share one CLOCK_MONOTONIC start, and child ``k`` owns the
listeners whose global index is ``k (mod processes)``, so together they keep the
global arrival rate. While it runs, a child prints ``P ...`` progress lines (written
by the C loop); at the end one ``R {json}`` line with its totals and its own CPU
time. ``merge_results`` adds the children's totals up.
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

LISTENERS_PER_PROCESS = 15_000  # stays below the 20,000 open-files limit of one process
SOURCE_ADDRESSES = tuple(f"127.0.0.{x}" for x in range(10, 74))  # 64 × the ephemeral ports
READY_TIMEOUT = 30.0  # s for the children to import and answer READY
START_DELAY_NS = 50_000_000  # GO names a start this far ahead, so every child sees it coming
RESULT_GRACE = 15.0  # s after the run's end for the children to report
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True)
class SwarmSpec:
    """What the swarm does; ``read_rate`` 0 reads as fast as possible. ``path`` is one
    mount, or a tuple of mounts that listener ``k`` picks from as ``path[k % len]``."""

    host: str
    port: int
    path: str | tuple[str, ...]
    listeners: int
    duration: float
    arrival_rate: float = 0.0  # listeners/s, 0 = all at once
    read_rate: int = 0  # bytes/s per listener
    prebuffer: int = 0  # bytes a paced listener reads at once (a player filling its buffer)
    icy: bool = False
    processes: int = 0  # 0 = automatic
    stall_after: float = 1.0
    connect_timeout: float = 10.0
    read_interval: float = 0.25  # s between two reads of a paced listener
    churn_rate: float = 0.0  # connections/s closed and opened anew (players leaving, others arriving)
    reconnect_after: float = 0.0  # s before a dropped or failed listener reconnects, 0 = never


@dataclass(slots=True)
class SwarmProgress:
    """The latest totals over all children (from their ``P`` lines)."""

    elapsed: float = 0.0
    opened: int = 0
    established: int = 0
    failed: int = 0
    dropped: int = 0
    body_bytes: int = 0
    stalls: int = 0


class SwarmError(RuntimeError):
    """A swarm child failed to start or to report."""


def process_count(spec: SwarmSpec) -> int:
    """Return how many children run ``spec``: enough for the fd limit, two for big runs."""
    if spec.processes > 0:
        return min(spec.processes, spec.listeners)
    needed = math.ceil(spec.listeners / LISTENERS_PER_PROCESS)
    return max(needed, 2 if spec.listeners >= 100 else 1)


def child_configs(spec: SwarmSpec) -> list[dict[str, Any]]:
    """Return the config of each child: its share of listeners in the global order."""
    count = process_count(spec)
    base = asdict(spec)
    del base["processes"], base["path"]
    base["paths"] = [spec.path] if isinstance(spec.path, str) else list(spec.path)
    configs = []
    for k in range(count):
        share = len(range(k, spec.listeners, count))
        configs.append({**base, "listeners": share, "index_offset": k, "index_stride": count,
                        "src_addrs": list(SOURCE_ADDRESSES)})
    return configs


def merge_results(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the children's totals added up (histograms bucket by bucket)."""
    merged: dict[str, Any] = {}
    for result in results:
        for key, value in result.items():
            merged[key] = _merge_value(merged.get(key), value, key)
    return merged


def _merge_value(old: Any, new: Any, key: str) -> Any:
    if old is None or new is None:
        return new if old is None else old
    if isinstance(new, dict):
        return {k: _merge_value(old.get(k), new.get(k), k) for k in old.keys() | new.keys()}
    if isinstance(new, list):
        return [a + b for a, b in zip(old, new)]
    if key == "elapsed":
        return max(old, new)
    return old + new


class SwarmRun:
    """The children of one swarm run. Use as a context manager; ``go()`` starts them."""

    def __init__(self, spec: SwarmSpec) -> None:
        self.spec = spec
        self._children: list[subprocess.Popen[str]] = []
        self._progress: dict[int, SwarmProgress] = {}
        self._results: dict[int, dict[str, Any]] = {}
        self._ready = threading.Semaphore(0)
        self._done = threading.Semaphore(0)
        self._errors: list[str] = []
        self.t_end = 0.0

    def __enter__(self) -> SwarmRun:
        try:
            self._spawn()
            self._wait(self._ready, READY_TIMEOUT, "answer READY")
        except BaseException:
            self.__exit__()
            raise
        return self

    def _spawn(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
        for k, config in enumerate(child_configs(self.spec)):
            child = subprocess.Popen(
                [sys.executable, "-m", "fanout.bench.swarm"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            self._children.append(child)
            assert child.stdin is not None
            child.stdin.write(json.dumps(config) + "\n")
            child.stdin.flush()
            threading.Thread(target=self._read_child, args=(k, child), daemon=True).start()

    def __exit__(self, *exc: object) -> None:
        for child in self._children:
            if child.poll() is None:
                child.kill()
            child.wait()

    def go(self) -> None:
        """Start every child at one shared CLOCK_MONOTONIC instant."""
        t0 = time.monotonic_ns() + START_DELAY_NS
        self.t_end = t0 / 1e9 + self.spec.duration
        for child in self._children:
            assert child.stdin is not None
            child.stdin.write(f"GO {t0}\n")
            child.stdin.flush()

    def progress(self) -> SwarmProgress:
        """Return the latest progress summed over the children."""
        total = SwarmProgress()
        for part in list(self._progress.values()):
            for name in ("opened", "established", "failed", "dropped", "body_bytes", "stalls"):
                setattr(total, name, getattr(total, name) + getattr(part, name))
            total.elapsed = max(total.elapsed, part.elapsed)
        return total

    def wait_done(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for all children to report; return whether they have."""
        deadline = time.monotonic() + timeout
        while len(self._results) + len(self._errors) < len(self._children):
            left = deadline - time.monotonic()
            if left <= 0 or not self._done.acquire(timeout=left):
                return False
        return True

    def result(self) -> dict[str, Any]:
        """Return the merged totals; raise SwarmError if a child failed."""
        left = max(self.t_end - time.monotonic(), 0.0) + RESULT_GRACE
        if not self.wait_done(left):
            raise SwarmError("swarm children did not report in time")
        if self._errors:
            raise SwarmError("; ".join(self._errors))
        return merge_results([self._results[k] for k in sorted(self._results)])

    def _wait(self, sem: threading.Semaphore, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        for _ in self._children:
            if not sem.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
                raise SwarmError(f"swarm children did not {what} within {timeout:.0f} s")
            if self._errors:
                raise SwarmError("; ".join(self._errors))

    def _read_child(self, k: int, child: subprocess.Popen[str]) -> None:
        assert child.stdout is not None and child.stderr is not None
        for line in child.stdout:
            if line.startswith("P "):
                self._progress[k] = _parse_progress(line)
            elif line.startswith("READY"):
                self._ready.release()
            elif line.startswith("R "):
                self._results[k] = json.loads(line[2:])
                self._done.release()
                return
        error = child.stderr.read().strip().splitlines()
        self._errors.append(f"swarm child {k} exited {child.wait()}: "
                            f"{error[-1] if error else 'no output'}")
        self._ready.release()
        self._done.release()


def _parse_progress(line: str) -> SwarmProgress:
    ms, opened, established, failed, dropped, body, stalls = (int(x) for x in line.split()[1:8])
    return SwarmProgress(ms / 1000, opened, established, failed, dropped, body, stalls)


def run_swarm(spec: SwarmSpec) -> dict[str, Any]:
    """Run ``spec`` to its end and return the merged totals (no progress display)."""
    with SwarmRun(spec) as run:
        run.go()
        return run.result()


# ---------------------------------------------------------------------------------
# The child process

def _raise_nofile_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _child_main() -> int:
    from fanout.bench import _swarm  # noqa: PLC0415 - the parent checked it is built

    config = json.loads(sys.stdin.readline())
    _raise_nofile_limit()
    print("READY", flush=True)
    command = sys.stdin.readline().split()
    if not command or command[0] != "GO":
        return 1
    config.update(t0_ns=int(command[1]), progress_fd=sys.stdout.fileno())
    before = resource.getrusage(resource.RUSAGE_SELF)
    result = _swarm.run(config)
    after = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_seconds"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print("R " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
