"""CPU and memory of the server under test, from psutil.

``ServerMonitor`` follows a process and all its descendants (fanout's supervisor and
workers; Icecast is one process). ``sample()`` records each process's CPU time and the
tree's total RSS; the CPU used between two marks is the sum of per-process increases,
so a worker that exits between samples still counts up to its last sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psutil


def listening_pid(port: int, host: str = "127.0.0.1") -> int | None:
    """Return the top-most process listening on ``host:port``, or None if not visible."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return None
    pids = {c.pid for c in conns if c.status == psutil.CONN_LISTEN and c.pid
            and c.laddr and c.laddr.port == port and c.laddr.ip in (host, "0.0.0.0", "::")}
    for pid in pids:
        try:
            if psutil.Process(pid).ppid() not in pids:
                return pid
        except psutil.NoSuchProcess:
            continue
    return None


@dataclass(slots=True)
class ServerMonitor:
    """CPU seconds and peak RSS of a process tree."""

    pid: int
    cpu: dict[int, float] = field(default_factory=dict)  # latest CPU seconds per pid
    rss_peak: int = 0

    def _tree(self) -> list[psutil.Process]:
        root = psutil.Process(self.pid)
        return [root, *root.children(recursive=True)]

    def sample(self) -> float:
        """Record the tree's CPU times and RSS; return its total CPU seconds so far."""
        rss = 0
        try:
            tree = self._tree()
        except psutil.NoSuchProcess:
            return sum(self.cpu.values())
        for proc in tree:
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    self.cpu[proc.pid] = times.user + times.system
                    rss += proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        self.rss_peak = max(self.rss_peak, rss)
        return sum(self.cpu.values())

    def start(self) -> float:
        """Begin a measurement window; return the CPU seconds so far."""
        self.rss_peak = 0
        return self.sample()
