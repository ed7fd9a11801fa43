"""The supervisor: binds the listening sockets, runs the workers, owns the mounts.

Theory of operation (after gunicorn's arbiter): signal handlers only enqueue the signal;
`run` dispatches each to `handle_<name>`. The parts it composes each do one thing:
`pool.py` the workers' lifecycle, `mounts.py` the mounts and fallback moves,
`gathering.py` cross-worker queries, `slaves.py` the KH slave-redirect table,
`relays.py` (with the pure `ownership.py`) which worker runs each relay pull,
`dispatch.py` the table of what each worker message does. The supervisor never reads or writes a client socket.

Start-up: the open-file limit is raised to the hard limit, the log files opened and the
sockets bound; a failure there is a `StartupError` (one line, exit status 2 or 3) before
anything else is said. `on_ready` (the built-in config's passwords) runs once every
worker booted. Every greenlet is supervised (`fanout.supervised`).

Relays: as a slave (`<master-server>`), a `MasterPoller` greenlet polls the master and
starts one relay per mirrored mount; `ConfiguredRelays` one per `<relay>` block. This
object is their `RelayHost`: `start_relay` hands the relay to `Relays`, which gives its
pull to a worker; the pull claims the mount from there as a source's worker does. The
supervisor never reads a media byte.
"""
from __future__ import annotations

import logging
import signal
import socket
import time
from dataclasses import replace
from typing import Callable, Mapping

import gevent
from gevent.queue import Queue

from fanout import core, logs, sdnotify, supervised
from fanout.address_files import warn_unreadable
from fanout.config import Config, ConfigError
from fanout.counters import SUPERVISOR_ROW, Counters
from fanout.httpclient import configure_upstream_tls
from fanout.messages import Booted, MountUp, NewConfig
from fanout.privileges import Secured, secure_process
from fanout.source_files import PlaylistLog
from fanout.protocol.redirect import registration_query
from fanout.protocol.yp import FIRST_ADD_DELAY
from fanout.registry import MountRecord
from fanout.relay.configured import ConfiguredRelays
from fanout.relay.plan import RelaySpec
from fanout.relay.poller import MasterPoller
from fanout.startup import (EXIT_OK, EXIT_STARTUP, StartupError, bind_listeners, load_config,
                            tls_for_reload,
                            open_log_files, raise_open_file_limit)
from fanout.supervisor.dispatch import worker_messages
from fanout.supervisor.gathering import Gathering
from fanout.supervisor.mounts import Mounts
from fanout.supervisor.pool import DEFAULT_TIMEOUT, WORKER_MODULE, WorkerHandle, WorkerPool
from fanout.supervisor.relays import Relay, Relays
from fanout.supervisor.slaves import SlaveRedirects, own_load, registration_ports
from fanout.supervisor.yp import YpDirectories

log = logging.getLogger("fanout.supervisor")


class Supervisor:
    def __init__(self, config: Config, config_path: str | None, workers: int,
                 drain: float = 0.0, timeout: float = DEFAULT_TIMEOUT,
                 on_ready: Callable[[], None] | None = None,
                 worker_module: str = WORKER_MODULE, allow_root: bool = False,
                 yp_add_delay: float = FIRST_ADD_DELAY) -> None:
        self.config = config
        self.config_path = config_path
        self.allow_root = allow_root  # --allow-root: run as root without <changeowner>
        self.secured: Secured | None = None  # the pid file and, chrooted, the config file
        self.on_ready = on_ready  # once every worker booted (the first time)
        self.ready = False
        self.exit_status: int | None = None
        self.listeners: list[socket.socket] = []
        self.signals: Queue[int] = Queue()
        self.counters = Counters.create()
        # Made before any worker: every worker inherits every doorbell (a writer in one
        # worker rings the others), and a replacement gets its slot's.
        self.doorbells = core.Doorbells.create(workers)
        self.pool = WorkerPool(self, workers, self.counters, self.doorbells, drain=drain,
                               timeout=timeout, worker_module=worker_module)
        self.mounts = Mounts(config, self.pool.broadcast)
        self.mounts.on_source_ended = self.source_ended
        self.mounts.on_title = self.title_changed  # issue 11 (opswire): <playlistlog>
        self.playlist: PlaylistLog | None = None  # opened after secure_process (chroot)
        self.gathering = Gathering(self.pool)
        self.slaves = SlaveRedirects(config, self.pool)
        self.pulls = Relays(self.pool, self.mounts)
        self.mounts.runs_relay = self.pulls.owns
        self.handlers = worker_messages(self.mounts, self.gathering, self.slaves, self.pulls,
                                        self.on_booted)
        self.poller: MasterPoller | None = None
        self.relays = ConfiguredRelays(self)
        self.notifier = sdnotify.Notifier.from_environment()  # systemd Type=notify
        self.directories = YpDirectories(self, yp_add_delay)  # issue 11 (opswire): YP

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
        configure_upstream_tls(self.config.paths)  # issue 12: this process's https upstreams
        self.listeners = bind_listeners(self.config)
        # -- issue 11 (opswire): <changeowner>, <chroot>, <pidfile>, right after binding
        # (ports below 1024); what is opened from here on (log files, webroot, dumps) is
        # opened as the new user, inside the new root, as 2.4.4 does.
        self.secured = secure_process(self.config, self.config_path, allow_root=self.allow_root)
        try:
            open_log_files(self.config, "supervisor")
        except StartupError:
            self.secured.release()
            raise
        self.playlist = PlaylistLog.of(self.config)
        warn_unreadable(self.config)  # issue 11: <deny-ip>/<allow-ip>, as the workers see them
        self.announce()
        if now > before:
            log.info("open files: limit raised from %d to %d (the hard limit)", before, now)
        else:
            log.info("open files: limit %d", now)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            gevent.signal_handler(signum, self.signals.put, signum)
        registry = self.mounts.registry
        try:
            registry.reserved = frozenset(r.local_mount for r in self.config.relays)
            self.pool.spawn_workers()
            self.pool.start_watchdog()
            self.start_master_poller()
            registry.reserved = self.relays.apply(self.config.relays)
            self.directories.apply(self.config.directories)  # issue 11 (opswire): YP
        except Exception as exc:
            log.debug("start-up failed", exc_info=True)
            self.stop()
            raise StartupError(f"start-up failed: {exc}", EXIT_STARTUP) from None

    def stop(self) -> None:
        self.notifier.stopping()
        self.directories.stop()  # issue 11 (opswire): YP listings removed first
        self.pool.stop_watchdog()
        self.stop_master_poller()
        self.relays.stop()
        self.pool.stop_workers()
        for sock in self.listeners:
            sock.close()
        self.mounts.registry.close_all()
        self.counters.close()
        self.doorbells.close()
        if self.secured is not None:  # issue 11 (opswire): the pid file goes last
            self.secured.release()

    def announce(self) -> None:
        for sock, spec in zip(self.listeners, self.config.listen_sockets):
            host, port = sock.getsockname()[:2]
            scheme = "https" if spec.ssl else "http"  # issue 12: a TLS port
            if host in ("0.0.0.0", "::"):  # every interface: name one that works here
                print(f"fanout: listening on {scheme}://127.0.0.1:{port}/ (all interfaces, "
                      f"port {port})", flush=True)
            else:
                shown = f"[{host}]" if ":" in host else host
                print(f"fanout: listening on {scheme}://{shown}:{port}/", flush=True)

    def halt(self, status: int) -> None:
        self.exit_status = status
        self.signals.put(0)  # wake the main loop

    # -- signals -----------------------------------------------------------------------------

    def handle_sigterm(self) -> None:
        log.info("stopping on SIGTERM")
        self.exit_status = EXIT_OK

    handle_sigint = handle_sigterm

    def handle_sigusr1(self) -> None:
        """logrotate moved the log files: reopen ours and have every worker reopen theirs."""
        logs.reopen_files()
        self.pool.signal_all(signal.SIGUSR1)
        log.info("SIGUSR1: log files reopened")

    def handle_sighup(self) -> None:
        with self.notifier.reloading():
            self.reload_config()

    def reload_config(self) -> None:
        if self.config_path is None:
            log.warning("SIGHUP: running on the built-in config, nothing to reload")
            return
        # issue 11 (opswire): after a chroot the file is read through its kept directory
        source = self.secured.config_source if self.secured is not None else None
        try:
            config = source.load() if source is not None else load_config(self.config_path)
        except ConfigError as exc:
            log.error("SIGHUP: keeping the running config: %s", exc)
            return
        for warning in config.warnings:
            log.warning("%s", warning)
        config = tls_for_reload(config, self.config)  # issue 12: a bad one keeps the old
        configure_upstream_tls(config.paths)  # issue 12: this process's https upstreams
        if config.listen_sockets != self.config.listen_sockets:
            log.warning("SIGHUP: listen-socket changes need a restart; keeping the old sockets")
            # Workers map their inherited fds to these specs by position: keep the bound ones.
            config = replace(config, listen_sockets=self.config.listen_sockets)
        old_master = self.config.master
        self.config = self.mounts.config = config
        try:
            open_log_files(config, "supervisor")
        except StartupError as exc:  # not at start-up: keep logging where we did
            log.error("SIGHUP: %s; log files unchanged", exc.message)
        self.playlist = PlaylistLog.of(config)
        warn_unreadable(config)  # issue 11: <deny-ip>/<allow-ip>
        self.pool.broadcast(NewConfig(config))
        self.slaves.reconfigure(config)
        self.mounts.registry.reserved = self.relays.apply(config.relays)
        self.directories.apply(config.directories)  # issue 11 (opswire): YP
        if config.master != old_master:
            self.stop_master_poller()
            self.start_master_poller()
        elif self.poller is not None:
            self.poller.trigger()
        log.info("SIGHUP: configuration reloaded from %s", self.config_path)

    # -- the workers (the PoolHost interface of pool.py) --------------------------------------

    def welcome(self, handle: WorkerHandle) -> None:
        """A new worker's first messages: the config, the redirect table, every mount."""
        handle.channel.send(NewConfig(self.config))
        handle.channel.send(self.slaves.message())
        for record in self.mounts.registry.mounts.values():
            handle.channel.send(MountUp(record.name, record.info), fds=[record.ring.fd])

    def dispatch(self, handle: WorkerHandle, message: object) -> None:
        self.handlers.dispatch(message, handle)

    def worker_died(self, handle: WorkerHandle) -> None:
        self.pulls.worker_died(handle.index)  # first: its relayed mounts are kept, held
        self.mounts.worker_died(handle.index)
        self.gathering.worker_died(handle)

    def on_booted(self, message: Booted, handle: WorkerHandle) -> None:
        handle.booted = True
        if not self.ready and self.pool.all_booted():
            self.ready = True
            self.notifier.ready()
            if self.on_ready is not None:
                self.on_ready()  # before the last "booted" line, which callers wait for
        log.info("worker %d booted (pid %d)", handle.index, message.pid)
        self.pulls.worker_booted(handle.index)

    # -- issue 11 (opswire): the YP listings' view of the mounts; titles into <playlistlog> -----

    def mount_records(self) -> Mapping[str, MountRecord]:
        """Every live mount (for the YP listings)."""
        return self.mounts.registry.mounts

    def listen_port(self) -> int:
        """The port listen URLs name: the first listen socket's, as bound (port 0 in the
        config lets the kernel choose)."""
        return int(self.config.port or self.listeners[0].getsockname()[1])

    def title_changed(self, name: str, title: str) -> None:
        """A mount's title changed: one playlist.log line, with its listeners now."""
        record = self.mounts.registry.mounts.get(name)
        if self.playlist is not None and record is not None:
            self.playlist.add(name, record.ring.listener_count(), title, time.time())

    # -- relays (the RelayHost / PollerHost interface of fanout.relay) -------------------------

    def start_master_poller(self) -> None:
        master = self.config.master
        if master is not None:
            self.poller = MasterPoller(self, master)
            self.poller.start()
            log.info("relaying the mounts of master %s:%d", master.server, master.port)

    def stop_master_poller(self) -> None:
        if self.poller is not None:
            self.poller.stop()
            self.poller = None

    def source_ended(self) -> None:
        if self.poller is not None:
            self.poller.trigger()  # a master mount this source shadowed may be free now

    def start_relay(self, spec: RelaySpec, on_ended: Callable[[], None]) -> Relay:
        """Run relay `spec` in a worker (fanout/supervisor/relays.py)."""
        return self.pulls.start_relay(spec, on_ended)

    def local_mounts(self) -> set[str]:
        return self.mounts.local_mounts()

    def redirect_registration(self, refresh: float | None = None) -> str:
        """What this server, as a slave with <master-redirect>, appends to its polls: KH's
        registration and its load (`refresh`: the fast schedule its master asked for)."""
        master = self.config.master
        if master is None or not master.redirect or not self.listeners:
            return ""
        port, tls_port = registration_ports(
            [(spec, sock.getsockname()[1])
             for sock, spec in zip(self.listeners, self.config.listen_sockets)])
        relayed = set(self.poller.pulls) if self.poller is not None else set()
        load = own_load(self.config, self.counters, self.mounts.registry.mounts, relayed,
                        self.exit_status is None, refresh)
        return registration_query(self.config.hostname, port, master.update_interval, load,
                                  tls_port)
