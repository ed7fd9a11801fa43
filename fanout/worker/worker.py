"""A worker process: accepts on the shared sockets and serves clients.

Theory of operation: the worker first waits (at most BOOT_WAIT s) for its `config`
message, then starts one `ClientServer` per inherited listening socket, knowing the
`<listen-socket>` it was bound for (a shoutcast-compat one serves Shoutcast sources only),
and says `booted`. A greenlet reads the control channel for the rest of its life:
`mount_up` maps a ring (from the fd that rides with the message), `mount_down` lets the
mount's listeners drain and then unmaps it, `claim_result` wakes the source that asked.
If the supervisor goes away the worker stops: it never outlives the server.

Every greenlet is supervised (`fanout.supervised`). Another beats in the shared counters
every `timeout / BEATS_PER_TIMEOUT` s; a worker whose hub stops (stuck, or SIGSTOPped)
stops beating and the supervisor replaces it after `--timeout` s. Near its open-file
limit the worker answers new clients 503 (`fdlimit.py`); a ring that arrived without its
fd (the kernel drops fds past the limit) is asked for again once fds are free.
"""
from __future__ import annotations

import errno
import importlib
import itertools
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import gevent
from gevent.event import AsyncResult, Event
from gevent.server import StreamServer
from gevent.socket import socket as GeventSocket

from fanout import control, core, logs, supervised
from fanout.config import Config, ListenSocket, ResolvedMount
from fanout.counters import Counters
from fanout.lifecycle import MountEvent, MountState, next_mount_state
from fanout.messages import (
    Answer, Booted, Claim, ClaimResult, Dispatch, Gather, Gathered, MountChanged,
    MountDown, MountUp, NewConfig, Query, Redirects, Release, Remount, Stop,
)
from fanout.mountinfo import MountInfo
from fanout.worker.fdlimit import FdGuard

log = logging.getLogger("fanout.worker")

# Seconds a worker waits for a gather's answers (the supervisor answers after its own
# GATHER_TIMEOUT at the latest).
GATHER_WAIT = 10.0
# Seconds a source waits for the supervisor's answer to its claim (it answers at once
# unless it is stuck, in which case it is being replaced).
CLAIM_WAIT = 10.0
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

# Handlers of cross-worker queries, by name: `handler(worker, **args) -> picklable result`.
# Modules register theirs with @query("name"); see Worker.gather.
QUERIES: dict[str, Callable[..., Any]] = {}


# Modules that register @query handlers: imported when the worker starts, because a
# gather may reach a worker before any request made it import them.
QUERY_MODULES = ("fanout.worker.stats", "fanout.worker.admin_queries")


def query(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(handler: Callable[..., Any]) -> Callable[..., Any]:
        QUERIES[name] = handler
        return handler
    return register


@dataclass(slots=True)
class ClaimAnswer:
    ok: bool
    status: int
    reason: str


@dataclass(slots=True)
class LocalMount:
    """This worker's view of one mount: the mapped ring and the listeners it serves."""

    name: str
    ring: Any  # core.Ring
    info: MountInfo
    resolved: ResolvedMount
    listeners: list[Any] = field(default_factory=list)  # core.Listener
    pump: gevent.Greenlet | None = None
    state: MountState = MountState.LIVE  # moved only by `advance` (fanout.lifecycle's table)
    slow_listeners: int = 0
    urgent: bool = False  # a full pass is due at the next tick (e.g. listeners moved in)
    fresh: list[Any] = field(default_factory=list)  # arrived since the last tick: served alone
    pending: int = 0  # listeners held until an on-demand relay's upstream is connected

    @property
    def is_ogg(self) -> bool:
        return bool(self.ring.fmt == core.FORMAT_OGG)

    @property
    def ended(self) -> bool:
        """mount_down came: it drains (or is gone); no listener is added to it."""
        return self.state in (MountState.ENDED, MountState.GONE)

    def advance(self, event: MountEvent) -> None:
        self.state = next_mount_state(self.state, event)

    def set_info(self, info: MountInfo) -> None:
        """A new info; a relay reconnecting holds the mount, streaming again resumes it."""
        self.info = info
        if self.state is MountState.LIVE and info.held:
            self.advance(MountEvent.HOLD)
        elif self.state is MountState.HELD and not info.held:
            self.advance(MountEvent.RESUME)


def spec_of_listener(specs: tuple[ListenSocket, ...], index: int, bound_port: int) -> ListenSocket:
    """The <listen-socket> the `index`-th inherited socket, bound to `bound_port`, was made for.

    The supervisor binds `config.listen_sockets` in order and passes the fds in that order,
    so the index says it (a port-0 spec binds any port). Should the config have changed
    since (a SIGHUP cannot rebind sockets), the first spec with the bound port is taken,
    else a plain HTTP socket: never a Shoutcast port by mistake.
    """
    if index < len(specs) and specs[index].port in (0, bound_port):
        return specs[index]
    same_port = [spec for spec in specs if spec.port == bound_port]
    return same_port[0] if same_port else ListenSocket(port=bound_port)


class ClientServer(StreamServer):
    """gevent's StreamServer, except that a socket handed to the pump stays open."""

    # Several workers accept on the same socket: take one connection per wake-up so the
    # kernel's wake-ups spread new clients over the workers.
    max_accept = 1

    def __init__(self, listener: socket.socket, worker: "Worker", spec: ListenSocket) -> None:
        super().__init__(listener, self.handle_client)
        self.worker = worker
        self.spec = spec  # the <listen-socket> this socket was bound for (shoutcast-compat …)
        self.kept: set[Any] = set()

    def do_read(self) -> tuple[Any, Any] | None:
        """Accept one connection, unless the worker is near its open-file limit: then the
        client is answered 503 at once (`fdlimit.py`). gevent's own accept would raise on
        EMFILE, print a traceback and retry without ever draining the queue."""
        guard = self.worker.fd_guard
        try:
            fd, address = self.socket._accept()
        except BlockingIOError:
            return None  # another worker was faster
        except OSError as exc:
            guard.accept_failed(self, exc)
            return None
        if guard.over_high_water(fd):
            guard.refuse(fd, "near the open-file limit")
            return None
        guard.accepted()
        sock = self.socket
        return GeventSocket(sock.family, sock.type, sock.proto, fileno=fd), address

    def handle_client(self, sock: Any, address: tuple[str, int]) -> None:
        from fanout.worker.connection import serve_connection

        serve_connection(self.worker, self, sock, address)

    def keep(self, sock: Any) -> None:
        self.kept.add(sock)

    def do_close(self, sock: Any, *args: Any) -> None:
        if sock in self.kept:
            self.kept.discard(sock)
        else:
            sock.close()


class Worker:
    def __init__(self, index: int, channel: control.Channel, counters: Counters,
                 listen_fds: list[int], drain: float, timeout: float) -> None:
        self.index = index
        self.drain = drain  # seconds to keep serving after SIGTERM (/health says 503)
        self.timeout = timeout  # the supervisor kills a worker that did not beat this long
        self.channel = channel
        self.counters = counters
        self.listen_fds = listen_fds
        self.config: Config | None = None
        self.configured = Event()
        self.stopping = Event()
        self.mounts: dict[str, LocalMount] = {}
        self.claims: dict[int, tuple[str, AsyncResult]] = {}  # id -> (mount, answer)
        self.redirect_targets: tuple[Any, ...] = ()  # redirects.Target: the master's slaves
        self.gathers: dict[int, AsyncResult] = {}
        self.claim_ids = itertools.count(1)
        self.client_ids = itertools.count(1)
        self.servers: list[ClientServer] = []
        self.fd_guard = FdGuard()
        self.lost_rings: set[str] = set()  # mounts whose mount_up came without its fd
        self.remounter: gevent.Greenlet | None = None
        self.handlers: Dispatch[control.Delivery] = Dispatch(f"worker {index}")
        self.handlers.on(NewConfig, self.on_config)
        self.handlers.on(Redirects, self.on_redirects)
        self.handlers.on(MountUp, self.on_mount_up)
        self.handlers.on(MountDown, self.on_mount_down)
        self.handlers.on(MountChanged, self.on_mount_info)
        self.handlers.on(ClaimResult, self.on_claim_result)
        self.handlers.on(Stop, self.on_stop)
        self.handlers.on(Query, self.on_query)
        self.handlers.on(Gathered, self.on_gathered)

    def run(self) -> int:
        supervised.count_into(self.counters, self.index)
        supervised.install_hub_reporter()
        gevent.signal_handler(signal.SIGTERM, self.stopping.set)
        gevent.signal_handler(signal.SIGINT, self.stopping.set)
        gevent.signal_handler(signal.SIGUSR1, self.reopen_logs)  # logrotate moved the files
        for module in QUERY_MODULES:
            importlib.import_module(module)
        self.beat()
        # Restarted for ever: without its beat the worker is killed as hung.
        supervised.spawn("worker.heartbeat", self.beat_forever, restart=True)
        # Restarted; given up (the channel is unusable), the worker stops and is replaced.
        supervised.spawn("worker.control", self.read_control, restart=True,
                         give_up=self.stopping.set)
        gevent.wait([self.configured, self.stopping], timeout=BOOT_WAIT, count=1)
        if not self.configured.is_set():
            if not self.stopping.is_set():
                log.error("no config from the supervisor within %ss; exiting", BOOT_WAIT)
            return BOOT_FAILED
        self.start_servers()
        try:
            self.channel.send(Booted(self.index, os.getpid()))
        except OSError:
            return BOOT_FAILED  # the supervisor is gone already
        self.stopping.wait()
        if self.drain > 0:
            log.info("stopping: draining for %.1fs (/health answers 503)", self.drain)
            gevent.sleep(self.drain)
        self.shutdown()
        return 0

    def start_servers(self) -> None:
        self.fd_guard.server_id = self.cfg.server_id
        for index, fd in enumerate(self.listen_fds):
            listener = socket.socket(fileno=fd)
            listener.setblocking(False)  # see bind_listeners: never block the hub in accept
            spec = spec_of_listener(self.cfg.listen_sockets, index, listener.getsockname()[1])
            server = ClientServer(listener, self, spec)
            server.start()
            self.servers.append(server)

    def beat(self) -> None:
        self.counters.beat(self.index, time.monotonic())

    def beat_forever(self) -> None:
        interval = min(MAX_BEAT_INTERVAL, self.timeout / BEATS_PER_TIMEOUT)
        while True:
            self.beat()
            gevent.sleep(interval)

    def reopen_logs(self) -> None:
        logs.reopen_files()
        log.info("SIGUSR1: log files reopened")

    def shutdown(self) -> None:
        for server in self.servers:
            server.close()
        for mount in list(self.mounts.values()):
            from fanout.worker.listeners import close_all_listeners

            close_all_listeners(self, mount)

    @property
    def cfg(self) -> Config:
        assert self.config is not None, "config arrives before any client is served"
        return self.config

    def next_client_id(self) -> int:
        """Connection ids unique across workers: the worker index is the low bits."""
        return next(self.client_ids) * 64 + self.index

    # -- control channel ---------------------------------------------------------------------

    def read_control(self) -> None:
        control.read_loop(self.channel, self.dispatch, "worker.control")
        if not self.stopping.is_set():
            log.warning("supervisor went away; stopping")
        self.stopping.set()

    def dispatch(self, delivery: control.Delivery) -> None:
        self.handlers.dispatch(delivery.message, delivery)

    def on_config(self, message: NewConfig, delivery: control.Delivery) -> None:
        self.config = message.config
        paths, logging_ = self.cfg.paths, self.cfg.logging
        logs.configure_files(paths.logdir, logging_.errorlog, logging_.accesslog,
                             logging_.loglevel, f"worker{self.index}")
        for mount in self.mounts.values():
            mount.resolved = self.cfg.resolve_mount(mount.name)
        self.configured.set()

    def on_redirects(self, message: Redirects, delivery: control.Delivery) -> None:
        self.redirect_targets = message.targets

    def on_mount_up(self, message: MountUp, delivery: control.Delivery) -> None:
        name = message.mount
        if message.resent and name not in self.lost_rings:
            return  # a newer mount_up brought the ring meanwhile
        fd = delivery.take_fd()
        if fd is None:
            self.ring_lost(name)
            return
        try:
            ring = core.Ring.attach(fd)  # keeps a dup of the fd: one more fd
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            self.ring_lost(name)
            return
        finally:
            os.close(fd)
        if name in self.lost_rings:
            self.lost_rings.discard(name)
            log.info("the ring of %s arrived this time; serving it", name)
        old = self.mounts.get(name)
        if old is not None:  # a new source took over before our old listeners drained
            from fanout.worker.listeners import close_all_listeners

            close_all_listeners(self, old)
        mount = LocalMount(name, ring, message.info, self.cfg.resolve_mount(name))
        mount.set_info(message.info)  # a relay reconnecting right now: held from the start
        self.mounts[name] = mount

    def on_mount_down(self, message: MountDown, delivery: control.Delivery) -> None:
        self.lost_rings.discard(message.mount)
        mount = self.mounts.get(message.mount)
        if mount is None:
            return
        mount.advance(MountEvent.END)
        if not mount.listeners:
            self.forget_mount(mount)

    def on_mount_info(self, message: MountChanged, delivery: control.Delivery) -> None:
        mount = self.mounts.get(message.mount)
        if mount is not None:
            mount.set_info(message.info)

    def on_claim_result(self, message: ClaimResult, delivery: control.Delivery) -> None:
        mount, result = self.claims.pop(message.id, ("", None))
        if result is not None:
            result.set(ClaimAnswer(message.ok, message.status, message.reason))
        elif message.ok:  # granted after its source gave up waiting: give it back
            self.release(message.mount)

    # -- rings that arrived without their fd -------------------------------------------------

    def ring_lost(self, name: str) -> None:
        """`name`'s mount_up came without its ring (we are at the open-file limit): ask
        the supervisor again once an fd is free. Logged once per mount and loss."""
        if name not in self.lost_rings:
            log.warning("the ring of %s arrived without its fd (out of file descriptors); "
                        "asking again once fds are free", name)
            self.lost_rings.add(name)
        if self.remounter is None or self.remounter.dead:
            # Restarted for ever: a lost ring must come back.
            self.remounter = supervised.spawn("worker.remount", self.remount, restart=True)

    def remount(self) -> None:
        """Ask for the lost rings every REMOUNT_RETRY s while an fd could be received."""
        while self.lost_rings:
            gevent.sleep(REMOUNT_RETRY)
            if self.lost_rings and fds_free(FDS_PER_RING):
                self.channel.send(Remount(tuple(sorted(self.lost_rings))))

    def on_stop(self, message: Stop, delivery: control.Delivery) -> None:
        self.stopping.set()

    def on_query(self, message: Query, delivery: control.Delivery) -> None:
        handler = QUERIES.get(message.query)
        try:
            result = handler(self, **message.args) if handler else None
        except Exception:
            supervised.report("worker.control", f"query {message.query!r}")
            result = None
        self.channel.send(Answer(message.gather, result))

    def on_gathered(self, message: Gathered, delivery: control.Delivery) -> None:
        result = self.gathers.pop(message.id, None)
        if result is not None:
            result.set(list(message.answers))

    # -- requests to the supervisor ----------------------------------------------------------

    def claim(self, mount: str, info: MountInfo) -> ClaimAnswer:
        """Ask the supervisor for a mount; the mount is in self.mounts when this says ok.
        503 when the supervisor does not answer within CLAIM_WAIT s or the ring could not
        be received (out of file descriptors)."""
        claim_id = next(self.claim_ids)
        result: AsyncResult = AsyncResult()
        self.claims[claim_id] = (mount, result)
        self.channel.send(Claim(claim_id, mount, info))
        try:
            answer: ClaimAnswer = result.get(timeout=CLAIM_WAIT)
        except gevent.Timeout:
            self.claims.pop(claim_id, None)
            log.error("no answer from the supervisor to a claim of %s within %ss", mount, CLAIM_WAIT)
            return ClaimAnswer(False, 503, "Server busy, try again later")
        if answer.ok and (mount not in self.mounts or mount in self.lost_rings):
            self.release(mount)
            return ClaimAnswer(False, 503, "Server busy, try again later")
        return answer

    def gather(self, name: str, **args: Any) -> list[Any]:
        """Run query `name` on every worker (this one included); their answers, in any
        order. A worker that does not answer in time is left out."""
        gather_id = next(self.claim_ids)
        result: AsyncResult = AsyncResult()
        self.gathers[gather_id] = result
        self.channel.send(Gather(gather_id, name, args))
        try:
            answers: list[Any] = result.get(timeout=GATHER_WAIT)
        except gevent.Timeout:
            self.gathers.pop(gather_id, None)
            return []
        return answers

    def release(self, mount: str) -> None:
        try:
            self.channel.send(Release(mount))
        except OSError:
            pass  # the supervisor is gone; it will not need to hear of it

    def forget_mount(self, mount: LocalMount) -> None:
        if mount.state is MountState.ENDED:
            mount.advance(MountEvent.FORGET)
        if self.mounts.get(mount.name) is mount:
            del self.mounts[mount.name]
        mount.ring.close()


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
