"""The workers' lifecycle: spawn, watch, reap, replace, stop (after gunicorn's arbiter).

Theory of operation: workers are started with fork+exec so they never inherit the
supervisor's hub. One supervised greenlet per worker reads its control channel and hands
each message to the host (`PoolHost.dispatch`); end-of-file there means the worker died,
and it is replaced at once, unless it died before saying `Booted`, which halts the server
(a broken worker would otherwise respawn in a loop), or the server is stopping. The
watchdog kills a worker that did not boot within BOOT_TIMEOUT (the server stops: status
3) or whose heartbeat in the shared counters is older than `timeout` (it is replaced), and
retries workers the system refused to start. The pool never reads or writes a client socket.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import gevent

import fanout
from fanout import control, core, supervised
from fanout.counters import Counters
from fanout.startup import EXIT_STARTUP

log = logging.getLogger("fanout.supervisor")

# The server's exit status when a worker cannot boot (packaging/fanout.service's
# RestartPreventExitStatus names it): it stops the server instead of a respawn loop.
EXIT_WORKER_BOOT = EXIT_STARTUP
# How long stopping workers may take before they are killed.
STOP_GRACE = 5.0
# Default seconds without a heartbeat after which a worker is killed and replaced
# (gunicorn's --timeout). Long enough that a worker SIGSTOPped for a dozen seconds, or
# starved on a loaded machine, is not killed; a hung one still is, within a minute.
DEFAULT_TIMEOUT = 30.0
# Seconds a worker has to say `Booted` (imports on a loaded machine take a while).
BOOT_TIMEOUT = 30.0
# Watchdog checks per timeout, and the longest time between two checks (s).
CHECKS_PER_TIMEOUT = 5
MAX_CHECK_INTERVAL = 1.0
# Seconds a worker whose channel closed may take to exit before it is killed.
REAP_WAIT = 1.0
# How often (s) a reaped worker's exit is looked for meanwhile.
REAP_POLL = 0.01
# The module a worker process runs, as `python -m` would run it.
WORKER_MODULE = "fanout.worker"
# Where the fanout package this supervisor runs was imported from. A worker imports from
# there first: `python -m` alone would put the working directory first, and a checkout's
# fanout/ (without its compiled core) would shadow the installed package.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fanout.__file__)))
# A worker that cannot even be imported says why in one line, as `python -m` would.
WORKER_BOOT = ("import runpy, sys; sys.path.insert(0, {root!r})\n"
               "try: runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
               "except ImportError as exc: sys.exit(f'fanout worker: {{exc}}')")


@dataclass(slots=True)
class WorkerHandle:
    index: int
    proc: subprocess.Popen[bytes]
    channel: control.Channel
    booted: bool = False
    started: float = field(default_factory=time.monotonic)
    killed: bool = False  # by the watchdog: its death is being awaited
    exited: bool = False  # its death was handled


class PoolHost(Protocol):
    """What the pool needs from the supervisor (`arbiter.Supervisor`)."""

    exit_status: int | None  # set once the server stops: no more spawning or killing
    listeners: list[socket.socket]  # the bound listening sockets every worker inherits

    def welcome(self, handle: WorkerHandle) -> None:
        """Send a new worker what it must know first (config, redirects, mounts)."""

    def dispatch(self, handle: WorkerHandle, message: object) -> None:
        """Handle a message from `handle`'s worker."""

    def worker_died(self, handle: WorkerHandle) -> None:
        """A booted worker died: forget what it held (before it is replaced)."""

    def halt(self, status: int) -> None:
        """Stop the server with exit `status`."""


class WorkerPool:
    def __init__(self, host: PoolHost, size: int, counters: Counters, doorbells: core.Doorbells,
                 *, drain: float, timeout: float, worker_module: str = WORKER_MODULE) -> None:
        self.host = host
        self.size = size
        self.counters = counters
        self.doorbells = doorbells  # every worker gets them all; a replacement its slot's
        self.drain = drain  # seconds a stopping worker keeps serving (--drain)
        self.timeout = timeout  # seconds without a heartbeat before a worker is replaced
        self.worker_module = worker_module
        self.workers: dict[int, WorkerHandle] = {}
        self.unstarted: set[int] = set()  # workers the system refused to start: retried
        self.watchdog: gevent.Greenlet | None = None

    def all_booted(self) -> bool:
        return len(self.workers) == self.size and all(h.booted for h in self.workers.values())

    # -- spawning ----------------------------------------------------------------------------

    def spawn_workers(self) -> None:
        for index in range(self.size):
            if index not in self.workers:
                self.spawn_worker(index)

    def replace_worker(self, index: int) -> None:
        """Start worker `index` again; if the system refuses (out of fds or processes),
        say so once: the watchdog tries again at each of its checks."""
        try:
            self.spawn_worker(index)
        except OSError as exc:
            if index not in self.unstarted:
                log.error("cannot start worker %d (%s); trying again", index, exc.strerror or exc)
                self.unstarted.add(index)
            return
        if index in self.unstarted:
            self.unstarted.discard(index)
            log.info("worker %d started after all", index)

    def spawn_worker(self, index: int) -> None:
        """Start worker `index`; raises OSError if the system refuses."""
        if self.host.exit_status is not None or index in self.workers:
            return  # stopping (it would only be killed again), or it runs already
        parent, child = control.make_pair()
        listeners = self.host.listeners
        bells = [self.doorbells.table_fd, *self.doorbells.eventfds]
        fds = [child.fileno(), self.counters.fd, *bells] + [s.fileno() for s in listeners]
        boot = WORKER_BOOT.format(root=PACKAGE_ROOT, module=self.worker_module)
        args = [sys.executable, "-c", boot, "--index", str(index),
                "--control-fd", str(child.fileno()), "--counters-fd", str(self.counters.fd),
                "--listen-fds", ",".join(str(s.fileno()) for s in listeners),
                "--doorbells-fd", str(self.doorbells.table_fd),
                "--eventfds", ",".join(str(fd) for fd in self.doorbells.eventfds),
                "--drain", str(self.drain), "--timeout", str(self.timeout)]
        try:
            proc = subprocess.Popen(args, pass_fds=fds, close_fds=True)
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        handle = WorkerHandle(index, proc, control.Channel(parent))
        self.workers[index] = handle
        try:
            self.host.welcome(handle)
        except OSError as exc:
            log.warning("worker %d unreachable at start (%s)", index, exc)  # its reader sees EOF
        # Restarted (a bad message is skipped inside); given up, the worker is killed and
        # replaced as if it had died: nobody would hear it any more.
        supervised.spawn("supervisor.control", self.read_worker, handle, restart=True,
                         give_up=lambda: self.abandon_worker(handle))

    def read_worker(self, handle: WorkerHandle) -> None:
        control.read_loop(handle.channel,
                          lambda delivery: self.host.dispatch(handle, delivery.message),
                          "supervisor.control")
        self.worker_exited(handle)

    def abandon_worker(self, handle: WorkerHandle) -> None:
        send_signal(handle.proc, signal.SIGKILL)
        self.worker_exited(handle)

    # -- watching ----------------------------------------------------------------------------

    def start_watchdog(self) -> None:
        # Restarted for ever: without it a hung worker would never be replaced.
        self.watchdog = supervised.spawn("supervisor.watchdog", self.watch_workers, restart=True)

    def watch_workers(self) -> None:
        """Kill hung workers and start the ones missing (gunicorn's manage_workers)."""
        interval = min(MAX_CHECK_INTERVAL, self.timeout / CHECKS_PER_TIMEOUT)
        while True:
            gevent.sleep(interval)
            for handle in list(self.workers.values()):
                self.check_worker(handle, time.monotonic())
            for index in sorted(self.unstarted):
                self.replace_worker(index)

    def check_worker(self, handle: WorkerHandle, now: float) -> None:
        """Kill `handle`'s worker if it did not boot in time or stopped beating (its
        reader then sees end-of-file: the server stops, or the worker is replaced)."""
        if handle.killed or self.host.exit_status is not None:
            return
        if not handle.booted:
            if now - handle.started > BOOT_TIMEOUT:
                log.error("worker %d (pid %d) did not boot within %ss; killing it",
                          handle.index, handle.proc.pid, BOOT_TIMEOUT)
                handle.killed = True
                send_signal(handle.proc, signal.SIGKILL)
            return
        silent = now - (self.counters.last_beat(handle.index) or handle.started)
        if silent > self.timeout:
            log.error("worker %d (pid %d) sent no heartbeat for %.1fs (timeout %ss); "
                      "killing it", handle.index, handle.proc.pid, silent, self.timeout)
            handle.killed = True
            send_signal(handle.proc, signal.SIGKILL)

    def worker_exited(self, handle: WorkerHandle) -> None:
        if handle.exited:
            return  # its reader was restarted after it had seen the end
        handle.exited = True
        handle.channel.close()
        status = reap(handle.proc)
        if self.workers.get(handle.index) is handle:
            del self.workers[handle.index]
        if self.host.exit_status is not None:
            return
        if not handle.booted:
            log.error("worker %d exited (status %s) before it booted; stopping the server",
                      handle.index, status)
            self.host.halt(EXIT_WORKER_BOOT)
            return
        log.warning("worker %d (pid %d) died with status %s; replacing it",
                    handle.index, handle.proc.pid, status)
        self.host.worker_died(handle)
        self.counters.reset_row(handle.index)
        self.replace_worker(handle.index)

    # -- talking to all ----------------------------------------------------------------------

    def broadcast(self, message: object, fds: Sequence[int] = ()) -> None:
        """Send `message` (and `fds`) to every worker; one unreachable is only logged."""
        for handle in list(self.workers.values()):
            try:
                handle.channel.send(message, fds=fds)
            except OSError as exc:
                log.warning("worker %d unreachable (%s)", handle.index, exc)

    def signal_all(self, signum: int) -> None:
        for handle in list(self.workers.values()):
            send_signal(handle.proc, signum)

    # -- stopping ----------------------------------------------------------------------------

    def stop_watchdog(self) -> None:
        if self.watchdog is not None:
            self.watchdog.kill()

    def stop_workers(self) -> None:
        """TERM every worker; KILL those still there after their drain and STOP_GRACE."""
        self.signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self.drain + STOP_GRACE
        for handle in list(self.workers.values()):
            remaining = max(0.0, deadline - time.monotonic())
            try:
                handle.proc.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                log.warning("worker %d did not stop in %.0fs; killing it", handle.index, STOP_GRACE)
                send_signal(handle.proc, signal.SIGKILL)
                try:
                    handle.proc.wait(timeout=STOP_GRACE)
                except subprocess.TimeoutExpired:
                    log.error("worker %d (pid %d) survived SIGKILL", handle.index, handle.proc.pid)


def send_signal(proc: subprocess.Popen[bytes], signum: int) -> None:
    try:
        proc.send_signal(signum)
    except ProcessLookupError:
        pass


def reap(proc: subprocess.Popen[bytes]) -> int | None:
    """Wait (cooperatively, at most REAP_WAIT s) for a worker whose channel closed."""
    deadline = time.monotonic() + REAP_WAIT
    while proc.poll() is None and time.monotonic() < deadline:
        gevent.sleep(REAP_POLL)
    if proc.poll() is None:
        send_signal(proc, signal.SIGKILL)
        try:
            proc.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            log.error("worker pid %d survived SIGKILL", proc.pid)
    return proc.returncode
