"""The supervisor: binds the listening sockets, runs the workers, owns the mount registry.

Theory of operation (after gunicorn's arbiter): signal handlers only enqueue the signal;
`run` dispatches each to `handle_<name>`. Workers are started with fork+exec so they never
inherit this hub. One greenlet per worker reads its control channel; end-of-file there
means the worker died, and it is replaced at once, unless it died before saying `booted`,
which halts the server (a broken worker would otherwise respawn in a loop), or the server
is stopping. The supervisor never reads or writes a client socket.

Start-up: the open-file limit is raised to the hard limit, the log files opened and the
sockets bound; a failure there is a `StartupError` (one line, exit status 2 or 3) before
anything else is said. `on_ready` (the built-in config's passwords) runs once every
worker booted. A watchdog greenlet kills a worker that did not boot within BOOT_TIMEOUT
(the server stops: status 3) or whose heartbeat in the shared counters is older than
`timeout` (it is replaced). Every greenlet is supervised (`fanout.supervised`).

Relays: as a slave (`<master-server>`), a `MasterPoller` greenlet polls the master and runs
one `RelayPull` greenlet per mirrored mount in this hub; `ConfiguredRelays` runs one per
`<relay>` block. A pull owns its ring as SUPERVISOR_OWNER and announces it with
`mount_up` exactly as a source's worker would; the workers do not care who writes a ring.
The supervisor also moves an ended mount's listeners to its fallback (and back, on
fallback-override) and keeps the KH slave-redirect table the workers redirect with.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import gevent
from gevent.queue import Queue

import fanout
from fanout import control, logs, sdnotify, supervised
from fanout.config import Config, ConfigError, load_config
from fanout.counters import SUPERVISOR_ROW, Counters
from fanout.gathers import NO_GATHER, Gathers, OpenGather
from fanout.messages import (
    MOVE_CLIENTS, Answer, Booted, Claim, ClaimResult, Dispatch, Gather, Gathered, Metadata,
    MountChanged, MountDown, MountUp, NewConfig, Query, Redirects, Release, Remount,
    SlaveRegister,
)
from fanout.mountinfo import MountInfo
from fanout.protocol.redirect import registration_query
from fanout.redirects import ADDED, FULL, RedirectTable
from fanout.registry import SUPERVISOR_OWNER, ClaimRefused, MountRecord, MountRegistry
from fanout.relay.configured import ConfiguredRelays
from fanout.relay.poller import MasterPoller
from fanout.startup import (EXIT_CONFIG, EXIT_OK, EXIT_STARTUP, StartupError, bind_listeners,
                            open_log_files, raise_open_file_limit)

log = logging.getLogger("fanout.supervisor")

# The server's exit statuses are fanout.startup's (EXIT_CONFIG is imported from there);
# packaging/fanout.service's RestartPreventExitStatus names these two.
EXIT_WORKER_BOOT = EXIT_STARTUP  # a worker that cannot boot stops the server
# How long stopping workers may take before they are killed.
STOP_GRACE = 5.0
# Default seconds without a heartbeat after which a worker is killed and replaced
# (gunicorn's --timeout). Long enough that a worker SIGSTOPped for a dozen seconds, or
# starved on a loaded machine, is not killed; a hung one still is, within a minute.
DEFAULT_TIMEOUT = 30.0
# Seconds a worker has to say `booted` (imports on a loaded machine take a while).
BOOT_TIMEOUT = 30.0
# Watchdog checks per timeout, and the longest time between two checks (s).
CHECKS_PER_TIMEOUT = 5
MAX_CHECK_INTERVAL = 1.0
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
# Seconds a gather waits for every worker's answer before answering with what it has.
GATHER_TIMEOUT = 5.0


@dataclass(slots=True)
class WorkerHandle:
    index: int
    proc: subprocess.Popen[bytes]
    channel: control.Channel
    booted: bool = False
    started: float = field(default_factory=time.monotonic)
    killed: bool = False  # by the watchdog: its death is being awaited
    exited: bool = False  # its death was handled


class Supervisor:
    def __init__(self, config: Config, config_path: str | None, workers: int,
                 drain: float = 0.0, timeout: float = DEFAULT_TIMEOUT,
                 on_ready: Callable[[], None] | None = None) -> None:
        self.drain = drain
        self.timeout = timeout  # seconds without a heartbeat before a worker is replaced
        self.on_ready = on_ready  # once every worker booted (the first time)
        self.ready = False
        self.watchdog: gevent.Greenlet | None = None
        self.unstarted: set[int] = set()  # workers the system refused to start: retried
        self.config = config
        self.config_path = config_path
        self.worker_count = workers
        self.listeners: list[socket.socket] = []
        self.counters = Counters.create()
        self.registry = MountRegistry()
        self.workers: dict[int, WorkerHandle] = {}
        self.signals: Queue[int] = Queue()
        self.gathers: Gathers[WorkerHandle] = Gathers()
        self.handlers: Dispatch[WorkerHandle] = Dispatch("supervisor")
        self.handlers.on(Booted, self.on_booted)
        self.handlers.on(Claim, self.on_claim)
        self.handlers.on(Release, self.on_release)
        self.handlers.on(Remount, self.on_remount)
        self.handlers.on(Gather, self.on_gather)
        self.handlers.on(Answer, self.on_answer)
        self.handlers.on(Metadata, self.on_metadata)
        self.handlers.on(SlaveRegister, self.on_slave_register)
        self.exit_status: int | None = None
        self.poller: MasterPoller | None = None
        self.relays = ConfiguredRelays(self)
        self.redirects = RedirectTable(config.max_redirect_slaves, config.redirects)
        self.notifier = sdnotify.Notifier.from_environment()  # systemd Type=notify

    # -- lifecycle ---------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until stopped; the exit status. Raises StartupError if it cannot start."""
        self.start()
        while self.exit_status is None:
            signum = self.signals.get()
            if signum:  # 0 only wakes the loop (see halt)
                name = signal.Signals(signum).name
                try:
                    getattr(self, f"handle_{name.lower()}")()
                except Exception:  # a failed reload must not stop the server
                    supervised.report("supervisor.signal", name)
        self.stop()
        return self.exit_status

    def start(self) -> None:
        """Raises StartupError (one line for the operator) when the server cannot start."""
        supervised.count_into(self.counters, SUPERVISOR_ROW)
        supervised.install_hub_reporter()
        before, now = raise_open_file_limit()
        self.open_log_files()
        self.listeners = bind_listeners(self.config)
        self.announce()
        if now > before:
            log.info("open files: limit raised from %d to %d (the hard limit)", before, now)
        else:
            log.info("open files: limit %d", now)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            gevent.signal_handler(signum, self.signals.put, signum)
        try:
            self.registry.reserved = frozenset(r.local_mount for r in self.config.relays)
            self.spawn_workers()
            # Restarted for ever: without it a hung worker would never be replaced.
            self.watchdog = supervised.spawn("supervisor.watchdog", self.watch_workers,
                                             restart=True)
            self.start_master_poller()
            self.registry.reserved = self.relays.apply(self.config.relays)
        except Exception as exc:
            log.debug("start-up failed", exc_info=True)
            self.stop()
            raise StartupError(f"start-up failed: {exc}", EXIT_STARTUP) from None

    def stop(self) -> None:
        self.notifier.stopping()
        if self.watchdog is not None:
            self.watchdog.kill()
        self.stop_master_poller()
        self.relays.stop()
        self.stop_workers()
        self.registry.close_all()
        self.counters.close()

    def announce(self) -> None:
        for sock in self.listeners:
            host, port = sock.getsockname()[:2]
            if host in ("0.0.0.0", "::"):  # every interface: name one that works here
                print(f"fanout: listening on http://127.0.0.1:{port}/ (all interfaces, "
                      f"port {port})", flush=True)
            else:
                shown = f"[{host}]" if ":" in host else host
                print(f"fanout: listening on http://{shown}:{port}/", flush=True)

    def open_log_files(self) -> None:
        """Raises StartupError (a config error) if the log files cannot be opened."""
        open_log_files(self.config, "supervisor")

    def halt(self, status: int) -> None:
        self.exit_status = status
        self.signals.put(0)  # wake the main loop

    def handle_sigterm(self) -> None:
        log.info("stopping on SIGTERM")
        self.exit_status = EXIT_OK

    handle_sigint = handle_sigterm

    def handle_sigusr1(self) -> None:
        """logrotate moved the log files: reopen ours and have every worker reopen theirs."""
        logs.reopen_files()
        for handle in list(self.workers.values()):
            _signal(handle.proc, signal.SIGUSR1)
        log.info("SIGUSR1: log files reopened")

    def handle_sighup(self) -> None:
        with self.notifier.reloading():
            self.reload_config()

    def reload_config(self) -> None:
        if self.config_path is None:
            log.warning("SIGHUP: running on the built-in config, nothing to reload")
            return
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            log.error("SIGHUP: keeping the running config: %s", exc)
            return
        for warning in config.warnings:
            log.warning("%s", warning)
        if config.listen_sockets != self.config.listen_sockets:
            log.warning("SIGHUP: listen-socket changes need a restart; keeping the old sockets")
            # Workers map their inherited fds to these specs by position: keep the bound ones.
            config = replace(config, listen_sockets=self.config.listen_sockets)
        old_master, self.config = self.config.master, config
        try:
            self.open_log_files()
        except StartupError as exc:  # not at start-up: keep logging where we did
            log.error("SIGHUP: %s; log files unchanged", exc.message)
        self.broadcast(NewConfig(config))
        self.redirects.reconfigure(config.max_redirect_slaves, config.redirects)
        self.broadcast_redirects()
        self.registry.reserved = self.relays.apply(config.relays)
        if config.master != old_master:
            self.stop_master_poller()
            self.start_master_poller()
        elif self.poller is not None:
            self.poller.trigger()
        log.info("SIGHUP: configuration reloaded from %s", self.config_path)

    # -- workers -----------------------------------------------------------------------------

    def spawn_workers(self) -> None:
        for index in range(self.worker_count):
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
        if self.exit_status is not None or index in self.workers:
            return  # stopping (it would only be killed again), or it runs already
        parent, child = control.make_pair()
        fds = [child.fileno(), self.counters.fd] + [s.fileno() for s in self.listeners]
        boot = WORKER_BOOT.format(root=PACKAGE_ROOT, module=WORKER_MODULE)
        args = [sys.executable, "-c", boot, "--index", str(index),
                "--control-fd", str(child.fileno()), "--counters-fd", str(self.counters.fd),
                "--listen-fds", ",".join(str(s.fileno()) for s in self.listeners),
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
            handle.channel.send(NewConfig(self.config))
            handle.channel.send(Redirects(self.redirects.targets()))
            for record in self.registry.mounts.values():
                handle.channel.send(MountUp(record.name, record.info), fds=[record.ring.fd])
        except OSError as exc:
            log.warning("worker %d unreachable at start (%s)", index, exc)  # its reader sees EOF
        # Restarted (a bad message is skipped inside); given up, the worker is killed and
        # replaced as if it had died: nobody would hear it any more.
        supervised.spawn("supervisor.control", self.read_worker, handle, restart=True,
                         give_up=lambda: self.abandon_worker(handle))

    def read_worker(self, handle: WorkerHandle) -> None:
        control.read_loop(handle.channel, lambda delivery: self.dispatch(handle, delivery.message),
                          "supervisor.control")
        self.worker_exited(handle)

    def abandon_worker(self, handle: WorkerHandle) -> None:
        _signal(handle.proc, signal.SIGKILL)
        self.worker_exited(handle)

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
        if handle.killed or self.exit_status is not None:
            return
        if not handle.booted:
            if now - handle.started > BOOT_TIMEOUT:
                log.error("worker %d (pid %d) did not boot within %ss; killing it",
                          handle.index, handle.proc.pid, BOOT_TIMEOUT)
                handle.killed = True
                _signal(handle.proc, signal.SIGKILL)
            return
        silent = now - (self.counters.last_beat(handle.index) or handle.started)
        if silent > self.timeout:
            log.error("worker %d (pid %d) sent no heartbeat for %.1fs (timeout %ss); "
                      "killing it", handle.index, handle.proc.pid, silent, self.timeout)
            handle.killed = True
            _signal(handle.proc, signal.SIGKILL)

    def worker_exited(self, handle: WorkerHandle) -> None:
        if handle.exited:
            return  # its reader was restarted after it had seen the end
        handle.exited = True
        handle.channel.close()
        status = _reap(handle.proc)
        if self.workers.get(handle.index) is handle:
            del self.workers[handle.index]
        if self.exit_status is not None:
            return
        if not handle.booted:
            log.error("worker %d exited (status %s) before it booted; stopping the server",
                      handle.index, status)
            self.halt(EXIT_WORKER_BOOT)
            return
        log.warning("worker %d (pid %d) died with status %s; replacing it",
                    handle.index, handle.proc.pid, status)
        for name in self.registry.owned_by(handle.index):
            self.release_mount(name, handle.index)
        for gather in self.gathers.forget_worker(handle.index, handle):
            self.send_gathered(gather)
        self.registry.forget_worker_counts(handle.index)
        self.counters.reset_row(handle.index)
        self.replace_worker(handle.index)

    def stop_workers(self) -> None:
        for handle in list(self.workers.values()):
            _signal(handle.proc, signal.SIGTERM)
        deadline = time.monotonic() + self.drain + STOP_GRACE
        for handle in list(self.workers.values()):
            remaining = max(0.0, deadline - time.monotonic())
            try:
                handle.proc.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                log.warning("worker %d did not stop in %.0fs; killing it", handle.index, STOP_GRACE)
                _signal(handle.proc, signal.SIGKILL)
                try:
                    handle.proc.wait(timeout=STOP_GRACE)
                except subprocess.TimeoutExpired:
                    log.error("worker %d (pid %d) survived SIGKILL", handle.index, handle.proc.pid)
        for sock in self.listeners:
            sock.close()

    def broadcast(self, message: object, fds: list[int] | None = None) -> None:
        for handle in list(self.workers.values()):
            try:
                handle.channel.send(message, fds=fds or [])
            except OSError as exc:
                log.warning("worker %d unreachable (%s)", handle.index, exc)

    # -- control messages --------------------------------------------------------------------

    def dispatch(self, handle: WorkerHandle, message: object) -> None:
        try:
            self.handlers.dispatch(message, handle)
        except Exception:
            if isinstance(message, Claim):
                self.fail_claim(handle, message)
            raise  # reported by control.read_loop

    def on_booted(self, message: Booted, handle: WorkerHandle) -> None:
        handle.booted = True
        if not self.ready and len(self.workers) == self.worker_count and all(
                h.booted for h in self.workers.values()):
            self.ready = True
            self.notifier.ready()
            if self.on_ready is not None:
                self.on_ready()  # before the last "booted" line, which callers wait for
        log.info("worker %d booted (pid %d)", handle.index, message.pid)

    def on_claim(self, message: Claim, handle: WorkerHandle) -> None:
        name = message.mount
        try:
            record = self.registry.claim(self.config, name, handle.index, message.info)
        except ClaimRefused as refused:
            handle.channel.send(ClaimResult(message.id, name, False, refused.status,
                                            refused.reason))
            return
        self.broadcast(MountUp(name, record.info), fds=[record.ring.fd])
        handle.channel.send(ClaimResult(message.id, name, True, 200, ""))
        log.info("source on %s (worker %d, %s)", name, handle.index, record.info.content_type)
        self.override_fallback(name)

    def fail_claim(self, handle: WorkerHandle, message: Claim) -> None:
        """A claim raised: its source gets 500 at once and the mount is not left held."""
        try:
            self.release_mount(message.mount, handle.index)
        finally:
            try:
                handle.channel.send(ClaimResult(message.id, message.mount, False, 500,
                                                "Internal Server Error"))
            except OSError:
                pass  # the worker died meanwhile

    def on_remount(self, message: Remount, handle: WorkerHandle) -> None:
        """The worker got these mounts' MountUp without the ring's fd: send it again."""
        for name in message.mounts:
            record = self.registry.mounts.get(name)
            if record is not None:
                handle.channel.send(MountUp(name, record.info, resent=True),
                                    fds=[record.ring.fd])

    def on_release(self, message: Release, handle: WorkerHandle) -> None:
        self.release_mount(message.mount, handle.index)

    def release_mount(self, name: str, owner: int) -> None:
        """End a mount `owner` holds; its listeners move to the first live mount of its
        fallback chain (same format family, §3.9), else they are closed as it goes down."""
        record = self.registry.mounts.get(name)
        if record is None or record.owner != owner:
            return
        fallback = self.live_fallback(name)
        if fallback is not None:
            # The workers' own move query, sent one-way: it reaches each worker before
            # the mount_down below (one channel per worker keeps the order).
            self.move_listeners(name, fallback)
        if self.registry.release(name, owner) is not None:
            self.broadcast(MountDown(name))
            log.info("source on %s ended", name)
            if owner != SUPERVISOR_OWNER and self.poller is not None:
                self.poller.trigger()  # a master mount this source shadowed may be free now

    def on_gather(self, message: Gather, handle: WorkerHandle) -> None:
        """Ask every worker `query`; the requester gets all answers in one Gathered."""
        gather_id = self.gathers.open(handle, message.id, self.workers)
        self.broadcast(Query(gather_id, message.query, message.args))
        supervised.spawn_later(GATHER_TIMEOUT, "supervisor.gather", self.gather_timed_out, gather_id)

    def on_answer(self, message: Answer, handle: WorkerHandle) -> None:
        gather = self.gathers.answer(message.gather, handle.index, message.result)
        if gather is not None:
            self.send_gathered(gather)

    def gather_timed_out(self, gather_id: int) -> None:
        gather = self.gathers.close(gather_id)
        if gather is not None:
            self.send_gathered(gather)

    def send_gathered(self, gather: OpenGather[WorkerHandle]) -> None:
        try:
            gather.requester.channel.send(Gathered(gather.request_id, tuple(gather.answers)))
        except OSError:
            pass  # the requester died meanwhile

    def on_metadata(self, message: Metadata, handle: WorkerHandle) -> None:
        self.set_mount_metadata(message.mount, message.block, message.title)

    def set_mount_metadata(self, name: str, block: bytes, title: str) -> None:
        record = self.registry.mounts.get(name)
        if record is None:
            return
        record.ring.set_metadata(block)
        self.change_mount_info(record, replace(record.info, title=title))

    def change_mount_info(self, record: MountRecord, info: MountInfo) -> None:
        record.info = info
        self.broadcast(MountChanged(record.name, info))

    def update_relay_info(self, name: str, change: Callable[[MountInfo], MountInfo]) -> None:
        """A relay pull changes the info of the mount it holds (never a source's)."""
        record = self.registry.mounts.get(name)
        if record is not None and record.owner == SUPERVISOR_OWNER:
            self.change_mount_info(record, change(record.info))

    # -- slave redirect (KH, PROTOCOL.md §2) ---------------------------------------------------

    def on_slave_register(self, message: SlaveRegister, handle: WorkerHandle) -> None:
        """A slave's authenticated poll carried its redirect registration."""
        host, port = message.host, message.port
        now = time.monotonic()
        for target in self.redirects.purge(now):
            log.info("redirect slave %s:%d expired", target.host, target.port)
        outcome = self.redirects.register(host, port, message.interval, now)
        if outcome == FULL:
            log.warning("redirect to slave limit reached (%d); %s:%d not added",
                        self.redirects.limit, host, port)
            return
        if outcome == ADDED:
            log.info("redirect slave %s:%d registered", host, port)
        self.broadcast_redirects()

    def broadcast_redirects(self) -> None:
        self.broadcast(Redirects(self.redirects.targets()))

    def redirect_registration(self) -> str:
        """What this server, as a slave with <master-redirect>, appends to its polls."""
        master = self.config.master
        if master is None or not master.redirect or not self.listeners:
            return ""
        port = self.listeners[0].getsockname()[1]
        return registration_query(self.config.hostname, port, master.update_interval)

    # -- relays (the RelayHost interface of fanout.relay) ------------------------------------

    def start_master_poller(self) -> None:
        if self.config.master is not None:
            self.poller = MasterPoller(self, self.config.master)
            self.poller.start()
            log.info("relaying the mounts of master %s:%d", self.config.master.server,
                     self.config.master.port)

    def stop_master_poller(self) -> None:
        if self.poller is not None:
            self.poller.stop()
            self.poller = None

    def local_mounts(self) -> set[str]:
        """Mounts held by source clients or configured relays: they win over the master's."""
        held = {name for name, rec in self.registry.mounts.items() if rec.owner != SUPERVISOR_OWNER}
        return held | self.registry.reserved

    def claim_relay_mount(self, name: str, info: MountInfo) -> MountRecord:
        """Claim `name` for a relay pull and announce it; raises ClaimRefused."""
        record = self.registry.claim(self.config, name, SUPERVISOR_OWNER, info)
        self.broadcast(MountUp(name, record.info), fds=[record.ring.fd])
        if info.connected:  # not an idle on-demand relay: it has a stream
            self.override_fallback(name)
        return record

    def release_relay_mount(self, name: str) -> None:
        """End a relayed mount (its listeners go to its fallback, as a source's do)."""
        self.release_mount(name, SUPERVISOR_OWNER)

    # -- fallback mounts (PROTOCOL.md §3.9, §5.1) ---------------------------------------------

    def live_fallback(self, name: str) -> str | None:
        """The first mount of `name`'s fallback chain that is live here, if any."""
        return next((m for m in self.config.fallback_chain(name) if m in self.registry.mounts), None)

    def override_fallback(self, name: str) -> None:
        """A source (or relay) came to `name`: with <fallback-override> it takes back every
        listener of the mount its listeners would fall back to (2.4.4: all of them)."""
        if not self.config.resolve_mount(name).fallback_override:
            return
        fallback = self.live_fallback(name)
        if fallback is not None:
            log.info("%s is back: taking its listeners back from %s (fallback-override)", name, fallback)
            self.move_listeners(fallback, name)

    def move_listeners(self, mount: str, destination: str) -> None:
        """Every worker moves its listeners of `mount` (same format family only)."""
        self.broadcast(Query(NO_GATHER, MOVE_CLIENTS, {"mount": mount, "destination": destination}))


def _signal(proc: subprocess.Popen[bytes], signum: int) -> None:
    try:
        proc.send_signal(signum)
    except ProcessLookupError:
        pass


def _reap(proc: subprocess.Popen[bytes]) -> int | None:
    """Wait (cooperatively, at most a second) for a worker whose channel closed."""
    deadline = time.monotonic() + 1.0
    while proc.poll() is None and time.monotonic() < deadline:
        gevent.sleep(0.01)
    if proc.poll() is None:
        _signal(proc, signal.SIGKILL)
        try:
            proc.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            log.error("worker pid %d survived SIGKILL", proc.pid)
    return proc.returncode
