"""A worker process: boots, reads the control channel, beats, and stops.

Theory of operation: the worker first waits (at most BOOT_WAIT s) for its `NewConfig`
message, then starts one `ClientServer` per inherited listening socket, knowing the
`<listen-socket>` it was bound for (a shoutcast-compat one serves Shoutcast sources only),
and says `Booted`. A greenlet reads the control channel for the rest of its life and
dispatches each message by type (`WorkerProcess.handlers`): `MountUp` maps a ring (from the fd
that rides with the message), `MountDown` lets the mount's listeners drain and then
unmaps it, `ClaimResult` and `Gathered` wake whoever waits in the link, `Query` runs a
registered query (`queries.py`), `StartRelay` and its kin run the relay pulls the
supervisor gives this worker (`relays.py`). If the supervisor goes away the worker stops: it never
outlives the server.

Every greenlet is supervised (`fanout.supervised`). Another beats in the shared counters
every `timeout / BEATS_PER_TIMEOUT` s; a worker whose hub stops (stuck, or SIGSTOPped)
stops beating and the supervisor replaces it after `--timeout` s. Near its open-file
limit the worker answers new clients 503 (`fdlimit.py`); a ring that arrived without its
fd (the kernel drops fds past the limit) is asked for again once fds are free.

Reading order of the package, bottom up (each module imports only those before it):
client, link, htpasswd_file, fdlimit, webfeed → state → queries, pump, credentials →
stats, listener_auth, listeners, streamlist, source, relay, relay_demand, relays,
admin_queries, admin, shoutcast, status, web, webadmin → connection → server → main.
"""
from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import time

import gevent
from gevent.event import Event

from fanout import control, core, logs, supervised
from fanout.counters import Counters
from fanout.lifecycle import MountEvent
from fanout.messages import (
    Answer, Booted, ClaimResult, Gathered, MountChanged, MountDown, MountUp, NewConfig, Query,
    Redirects, RelayStopped, Remount, RetryRelay, StartRelay, Stop, StopRelay, WakeRelay,
)
from fanout.mountinfo import MountInfo
from fanout.protocol.log_rotation import Rotation
from fanout.worker.fdlimit import FdGuard
from fanout.worker.link import SupervisorLink
from fanout.worker.pump import close_all_listeners, mount_ended
from fanout.worker import filemount, relays
from fanout.worker.queries import QUERIES
from fanout.worker.certificates import Certificates
from fanout.worker.server import ClientServer, spec_of_listener
from fanout.worker.state import LocalMount, Worker

log = logging.getLogger("fanout.worker")

# Seconds a new worker waits for its config before giving up (exit status BOOT_FAILED).
BOOT_WAIT = 30.0
# Exit status of a worker that could not boot.
BOOT_FAILED = 3
# Heartbeats per --timeout: a worker is killed after missing about this many in a row.
BEATS_PER_TIMEOUT = 5
# Longest time between two heartbeats (s), whatever the timeout.
MAX_BEAT_INTERVAL = 1.0
# Seconds between two tries to get back rings that arrived without their fd.
REMOUNT_RETRY = 0.5
# Fds that mapping a ring takes: the one received and the dup the ring keeps.
FDS_PER_RING = 2


class WorkerProcess:
    """The worker's life: boot, control channel, heartbeat, shutdown."""

    def __init__(self, index: int, channel: control.Channel, counters: Counters,
                 doorbells: core.Doorbells, listen_fds: list[int], drain: float,
                 timeout: float) -> None:
        self.worker = Worker(index, SupervisorLink(channel), counters, doorbells)
        self.channel = channel
        self.drain = drain  # seconds to keep serving after SIGTERM (/health says 503)
        self.timeout = timeout  # the supervisor kills a worker that did not beat this long
        self.listen_fds = listen_fds
        self.configured = Event()
        self.servers: list[ClientServer] = []
        self.certificates = Certificates()  # issue 12: TLS ports, trusted proxies
        self.fd_guard = FdGuard(self.worker.tallies.count_refusal)
        self.remounter: gevent.Greenlet | None = None
        # What each message from the supervisor does here.
        self.handlers: control.Dispatch[control.Delivery] = control.Dispatch(f"worker {index}")
        self.handlers.on(NewConfig, self.on_config)
        self.handlers.on(Redirects, self.on_redirects)
        self.handlers.on(MountUp, self.on_mount_up)
        self.handlers.on(MountDown, self.on_mount_down)
        self.handlers.on(MountChanged, self.on_mount_changed)
        self.handlers.on(ClaimResult, self.on_claim_result)
        self.handlers.on(Stop, self.on_stop)
        self.handlers.on(Query, self.on_query)
        self.handlers.on(Gathered, self.on_gathered)
        self.handlers.on(StartRelay, self.on_start_relay)
        self.handlers.on(StopRelay, self.on_stop_relay)
        self.handlers.on(RetryRelay, self.on_retry_relay)
        self.handlers.on(WakeRelay, self.on_wake_relay)

    def run(self) -> int:
        worker = self.worker
        supervised.count_into(worker.counters, worker.index)
        supervised.install_hub_reporter()
        gevent.signal_handler(signal.SIGTERM, worker.stopping.set)
        gevent.signal_handler(signal.SIGINT, worker.stopping.set)
        gevent.signal_handler(signal.SIGUSR1, self.reopen_logs)  # logrotate moved the files
        self.beat()
        # Restarted for ever: without its beat the worker is killed as hung.
        supervised.spawn("worker.heartbeat", self.beat_forever, restart=True)
        # Restarted; given up (the channel is unusable), the worker stops and is replaced.
        supervised.spawn("worker.control", self.read_control, restart=True,
                         give_up=worker.stopping.set)
        gevent.wait([self.configured, worker.stopping], timeout=BOOT_WAIT, count=1)
        if not self.configured.is_set():
            if not worker.stopping.is_set():
                log.error("no config from the supervisor within %ss; exiting", BOOT_WAIT)
            return BOOT_FAILED
        self.start_servers()
        try:
            worker.link.send(Booted(worker.index, os.getpid()))
        except OSError:
            return BOOT_FAILED  # the supervisor is gone already
        worker.stopping.wait()
        if self.drain > 0:
            log.info("stopping: draining for %.1fs (/health answers 503)", self.drain)
            gevent.sleep(self.drain)
        self.shutdown()
        return 0

    def start_servers(self) -> None:
        cfg = self.worker.cfg
        self.fd_guard.server_id = cfg.server_id
        for index, fd in enumerate(self.listen_fds):
            listener = socket.socket(fileno=fd)
            listener.setblocking(False)  # see bind_listeners: never block the hub in accept
            port = listener.getsockname()[1]
            spec = spec_of_listener(cfg.listen_sockets, index, port)
            server = ClientServer(listener, self.worker, self.fd_guard, spec, self.certificates)
            server.start()
            self.servers.append(server)
            self.worker.bound_ports.append(port)

    def beat(self) -> None:
        self.worker.counters.beat(self.worker.index, time.monotonic())

    def beat_forever(self) -> None:
        interval = min(MAX_BEAT_INTERVAL, self.timeout / BEATS_PER_TIMEOUT)
        while True:
            self.beat()
            gevent.sleep(interval)

    def reopen_logs(self) -> None:
        logs.reopen_files()
        log.info("SIGUSR1: log files reopened")

    def shutdown(self) -> None:
        relays.stop_relays(self.worker)
        for server in self.servers:
            server.close()
        for mount in self.worker.served_mounts():
            close_all_listeners(self.worker, mount)

    # -- the control channel -------------------------------------------------------------

    def read_control(self) -> None:
        control.read_loop(self.channel, self.dispatch, "worker.control")
        if not self.worker.stopping.is_set():
            log.warning("supervisor went away; stopping")
        self.worker.stopping.set()

    def dispatch(self, delivery: control.Delivery) -> None:
        self.handlers.dispatch(delivery.message, delivery)

    def on_config(self, message: NewConfig, delivery: control.Delivery) -> None:
        worker = self.worker
        worker.config = config = message.config
        paths, logging_ = config.paths, config.logging
        logs.configure_files(paths.logdir, logging_.errorlog, logging_.accesslog,
                             logging_.loglevel, f"worker{worker.index}",
                             Rotation.of(logging_.logsize, logging_.logarchive))
        for mount in worker.served_mounts():
            mount.resolved = config.resolve_mount(mount.name)
        self.certificates.configure(config)  # issue 12: a SIGHUP reloads the certificate
        worker.addresses.configure(config.paths)  # issue 11: <deny-ip>/<allow-ip> files
        self.configured.set()

    def on_redirects(self, message: Redirects, delivery: control.Delivery) -> None:
        self.worker.redirect_targets = message.targets

    def on_mount_up(self, message: MountUp, delivery: control.Delivery) -> None:
        if message.resent and message.mount not in self.worker.lost_rings:
            return  # a newer MountUp brought the ring meanwhile
        self.map_ring(message.mount, message.info, delivery.take_fd())

    def map_ring(self, name: str, info: MountInfo, fd: int | None) -> None:
        """Serve mount `name` from the ring `fd` (which this closes); a ring that came
        without its fd, or that cannot be mapped for want of fds, is asked for again."""
        worker = self.worker
        if fd is None:
            self.ring_lost(name)
            return
        try:
            # Keeps a dup of the fd: one more fd. Writes here (a source, a relay pull) ring
            # the doorbells of the workers that serve its listeners.
            ring = core.Ring.attach(fd, doorbells=worker.doorbells)
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            self.ring_lost(name)
            return
        finally:
            os.close(fd)
        if name in worker.lost_rings:
            worker.lost_rings.discard(name)
            log.info("the ring of %s arrived this time; serving it", name)
        old = worker.mounts.get(name)
        if old is not None:  # a new source took over before our old listeners drained
            close_all_listeners(worker, old)
        mount = LocalMount(name, ring, info, worker.cfg.resolve_mount(name))
        mount.set_info(info)  # a relay reconnecting right now: held from the start
        worker.mounts[name] = mount
        worker.status_feed.mounts_changed()
        filemount.take_back(worker, mount)  # <fallback-override> from a fallback file

    def on_mount_down(self, message: MountDown, delivery: control.Delivery) -> None:
        worker = self.worker
        worker.lost_rings.discard(message.mount)
        mount = worker.mounts.get(message.mount)
        if mount is None:
            return
        mount.advance(MountEvent.END)
        worker.status_feed.mounts_changed()
        filemount.fall_back(worker, mount)  # its listeners no live fallback took
        mount_ended(worker, mount)

    def on_mount_changed(self, message: MountChanged, delivery: control.Delivery) -> None:
        mount = self.worker.mounts.get(message.mount)
        if mount is not None:
            mount.set_info(message.info)
            self.worker.status_feed.mounts_changed()

    def on_claim_result(self, message: ClaimResult, delivery: control.Delivery) -> None:
        link = self.worker.link
        if not link.claim_answered(message) and message.ok:
            link.release(message.mount)  # granted after its source gave up waiting: give it back

    def on_stop(self, message: Stop, delivery: control.Delivery) -> None:
        self.worker.stopping.set()

    def on_query(self, message: Query, delivery: control.Delivery) -> None:
        handler = QUERIES.get(message.query)
        try:
            result = handler(self.worker, **message.args) if handler else None
        except Exception:
            supervised.report("worker.control", f"query {message.query!r}")
            result = None
        self.worker.link.send(Answer(message.gather, result))

    def on_gathered(self, message: Gathered, delivery: control.Delivery) -> None:
        self.worker.link.gathered(message)

    # -- relay pulls (relays.py) ---------------------------------------------------------

    def on_start_relay(self, message: StartRelay, delivery: control.Delivery) -> None:
        worker, name = self.worker, message.spec.mount
        resume = message.info is not None
        if message.info is not None and (name not in worker.mounts or name in worker.lost_rings):
            self.map_ring(name, message.info, delivery.take_fd())  # its MountUp's was lost
        relays.start_relay(worker, message.spec, resume)

    def on_stop_relay(self, message: StopRelay, delivery: control.Delivery) -> None:
        relays.stop_relay(self.worker, message.mount)
        if message.hand_over:  # stopped for good: only now may the next owner write the ring
            log.info("relay %s: stopped here (worker %d) to be handed on", message.mount,
                     self.worker.index)
            self.worker.link.send(RelayStopped(message.mount))

    def on_retry_relay(self, message: RetryRelay, delivery: control.Delivery) -> None:
        relays.retry_relay(self.worker, message.mount)

    def on_wake_relay(self, message: WakeRelay, delivery: control.Delivery) -> None:
        relays.wake_relay(self.worker, message.mount)

    # -- rings that arrived without their fd -----------------------------------------------

    def ring_lost(self, name: str) -> None:
        """`name`'s MountUp came without its ring (we are at the open-file limit): ask the
        supervisor again once an fd is free. Logged once per mount and loss."""
        lost = self.worker.lost_rings
        if name not in lost:
            log.warning("the ring of %s arrived without its fd (out of file descriptors); "
                        "asking again once fds are free", name)
            lost.add(name)
        if self.remounter is None or self.remounter.dead:
            # Restarted for ever: a lost ring must come back.
            self.remounter = supervised.spawn("worker.remount", self.remount, restart=True)

    def remount(self) -> None:
        """Ask for the lost rings every REMOUNT_RETRY s while an fd could be received."""
        lost = self.worker.lost_rings
        while lost:
            gevent.sleep(REMOUNT_RETRY)
            if lost and fds_free(FDS_PER_RING):
                self.worker.link.send(Remount(tuple(sorted(lost))))


def fds_free(count: int) -> bool:
    """Whether this process could open `count` more files now."""
    opened: list[int] = []
    try:
        for _ in range(count):
            opened.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
    except OSError:
        return False
    finally:
        for fd in opened:
            os.close(fd)
    return True
