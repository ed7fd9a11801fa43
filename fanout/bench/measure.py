"""CPU and memory of the server under test, from psutil.

``ServerMonitor`` follows a process and all its descendants (fanout's supervisor and
workers; Icecast is one process). ``sample()`` records each process's CPU time and the
tree's total RSS; the CPU used between two marks is the sum of per-process increases,
so a worker that exits between samples still counts up to its last sample, and one
that started in between counts from zero. ``split`` divides it between the root (the
supervisor) and the other processes (the workers). ``pss()`` is the tree's
proportional set size: shared memory (fanout's rings, mapped by every worker) is
counted once, where summed RSS counts it in every process that touched it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psutil

from fanout.bench.report import CpuSplit


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

    def mark(self) -> dict[int, float]:
        """Return the CPU seconds per process as of the last sample (for ``split``)."""
        return dict(self.cpu)

    def split(self, start: dict[int, float]) -> CpuSplit:
        """Return the CPU used since the mark ``start``, root and other processes apart."""
        used = {pid: cpu - start.get(pid, 0.0) for pid, cpu in self.cpu.items()}
        root = used.get(self.pid, 0.0)
        total = sum(used.values())
        return CpuSplit(total, root, total - root, has_children=len(self.cpu) > 1)

    def pss(self) -> int | None:
        """Return the tree's PSS in bytes now (None if it cannot be read)."""
        total = 0
        try:
            tree = self._tree()
        except psutil.NoSuchProcess:
            return None
        for proc in tree:
            try:
                total += proc.memory_full_info().pss
            except (psutil.NoSuchProcess, psutil.AccessDenied, AttributeError):
                return None
        return total

    def rss_by_process(self) -> dict[int, int]:
        """Return each live process's RSS in bytes, by pid."""
        rss = {}
        try:
            tree = self._tree()
        except psutil.NoSuchProcess:
            return {}
        for proc in tree:
            try:
                rss[proc.pid] = proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return rss

    def children(self) -> list[psutil.Process]:
        """Return the root's live child processes (fanout's workers), oldest first."""
        try:
            kids = psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return []
        aged = []
        for kid in kids:
            try:
                aged.append((kid.create_time(), kid.pid, kid))
            except psutil.NoSuchProcess:
                continue
        return [kid for _, _, kid in sorted(aged, key=lambda item: item[:2])]
