"""A worker process: accepts on the shared sockets and serves clients.

Theory of operation: the worker first waits for its `config` message, then starts one
`ClientServer` per inherited listening socket, knowing the `<listen-socket>` it was bound
for (a shoutcast-compat one serves Shoutcast sources only), and says `booted`. A greenlet
reads the control channel for the rest of its life: `mount_up` maps a ring (from the fd
that rides with the message), `mount_down` lets the mount's listeners drain and then
unmaps it, `claim_result` wakes the source that asked. If the supervisor goes away the
worker stops: it never outlives the server.
"""
from __future__ import annotations

import importlib
import itertools
import logging
import os
import signal
import socket
from dataclasses import dataclass, field
from typing import Any, Callable

import gevent
from gevent.event import AsyncResult, Event
from gevent.server import StreamServer

from fanout import control, core, logs
from fanout.config import Config, ListenSocket, ResolvedMount
from fanout.counters import Counters

log = logging.getLogger("fanout.worker")

# Seconds a worker waits for a gather's answers (the supervisor answers after its own
# GATHER_TIMEOUT at the latest).
GATHER_WAIT = 10.0

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
    info: dict[str, Any]
    resolved: ResolvedMount
    listeners: list[Any] = field(default_factory=list)  # core.Listener
    pump: gevent.Greenlet | None = None
    ended: bool = False
    slow_listeners: int = 0
    urgent: bool = False  # a full pass is due at the next tick (e.g. listeners moved in)
    fresh: list[Any] = field(default_factory=list)  # arrived since the last tick: served alone
    pending: int = 0  # listeners held until an on-demand relay's upstream is connected

    @property
    def is_ogg(self) -> bool:
        return bool(self.ring.fmt == core.FORMAT_OGG)


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
                 listen_fds: list[int], drain: float = 0.0) -> None:
        self.index = index
        self.drain = drain  # seconds to keep serving after SIGTERM (/health says 503)
        self.channel = channel
        self.counters = counters
        self.listen_fds = listen_fds
        self.config: Config | None = None
        self.configured = Event()
        self.stopping = Event()
        self.mounts: dict[str, LocalMount] = {}
        self.claims: dict[int, AsyncResult] = {}
        self.redirect_targets: tuple[Any, ...] = ()  # redirects.Target: the master's slaves
        self.gathers: dict[int, AsyncResult] = {}
        self.claim_ids = itertools.count(1)
        self.client_ids = itertools.count(1)
        self.servers: list[ClientServer] = []

    def run(self) -> int:
        gevent.signal_handler(signal.SIGTERM, self.stopping.set)
        gevent.signal_handler(signal.SIGINT, self.stopping.set)
        gevent.signal_handler(signal.SIGUSR1, self.reopen_logs)  # logrotate moved the files
        for module in QUERY_MODULES:
            importlib.import_module(module)
        gevent.spawn(self.read_control)
        self.configured.wait()
        for index, fd in enumerate(self.listen_fds):
            listener = socket.socket(fileno=fd)
            listener.setblocking(False)  # see bind_listeners: never block the hub in accept
            spec = spec_of_listener(self.cfg.listen_sockets, index, listener.getsockname()[1])
            server = ClientServer(listener, self, spec)
            server.start()
            self.servers.append(server)
        self.channel.send("booted", worker=self.index, pid=os.getpid())
        self.stopping.wait()
        if self.drain > 0:
            log.info("stopping: draining for %.1fs (/health answers 503)", self.drain)
            gevent.sleep(self.drain)
        self.shutdown()
        return 0

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
        while True:
            try:
                message = self.channel.recv()
            except OSError:
                message = None
            if message is None:
                log.warning("supervisor went away; stopping")
                self.stopping.set()
                return
            handler = getattr(self, f"on_{message.op}", None)
            if handler is None:
                log.error("unknown control op %r", message.op)
                continue
            handler(message)

    def on_config(self, message: control.Message) -> None:
        self.config = message["config"]
        paths, logging_ = self.cfg.paths, self.cfg.logging
        logs.configure_files(paths.logdir, logging_.errorlog, logging_.accesslog,
                             logging_.loglevel, f"worker{self.index}")
        for mount in self.mounts.values():
            mount.resolved = self.cfg.resolve_mount(mount.name)
        self.configured.set()

    def on_redirects(self, message: control.Message) -> None:
        self.redirect_targets = message["targets"]

    def on_mount_up(self, message: control.Message) -> None:
        (fd,) = message.fds
        try:
            ring = core.Ring.attach(fd)
        finally:
            os.close(fd)
        name = message["mount"]
        old = self.mounts.get(name)
        if old is not None:  # a new source took over before our old listeners drained
            from fanout.worker.listeners import close_all_listeners

            close_all_listeners(self, old)
        self.mounts[name] = LocalMount(name, ring, message["info"], self.cfg.resolve_mount(name))

    def on_mount_down(self, message: control.Message) -> None:
        mount = self.mounts.get(message["mount"])
        if mount is None:
            return
        mount.ended = True
        if not mount.listeners:
            self.forget_mount(mount)

    def on_mount_info(self, message: control.Message) -> None:
        mount = self.mounts.get(message["mount"])
        if mount is not None:
            mount.info = message["info"]

    def on_claim_result(self, message: control.Message) -> None:
        result = self.claims.pop(message["id"], None)
        if result is not None:
            result.set(ClaimAnswer(message["ok"], message["status"], message["reason"]))

    def on_stop(self, message: control.Message) -> None:
        self.stopping.set()

    def on_query(self, message: control.Message) -> None:
        handler = QUERIES.get(message["query"])
        try:
            result = handler(self, **message["args"]) if handler else None
        except Exception:
            log.exception("query %r failed", message["query"])
            result = None
        self.channel.send("answer", gather=message["gather"], result=result)

    def on_gathered(self, message: control.Message) -> None:
        result = self.gathers.pop(message["id"], None)
        if result is not None:
            result.set(message["answers"])

    # -- requests to the supervisor ----------------------------------------------------------

    def claim(self, mount: str, info: dict[str, Any]) -> ClaimAnswer:
        """Ask the supervisor for a mount; the mount is in self.mounts when this says ok."""
        claim_id = next(self.claim_ids)
        result: AsyncResult = AsyncResult()
        self.claims[claim_id] = result
        self.channel.send("claim", id=claim_id, mount=mount, info=info)
        answer: ClaimAnswer = result.get()
        return answer

    def gather(self, name: str, **args: Any) -> list[Any]:
        """Run query `name` on every worker (this one included); their answers, in any
        order. A worker that does not answer in time is left out."""
        gather_id = next(self.claim_ids)
        result: AsyncResult = AsyncResult()
        self.gathers[gather_id] = result
        self.channel.send("gather", id=gather_id, query=name, args=args)
        try:
            answers: list[Any] = result.get(timeout=GATHER_WAIT)
        except gevent.Timeout:
            self.gathers.pop(gather_id, None)
            return []
        return answers

    def release(self, mount: str) -> None:
        try:
            self.channel.send("release", mount=mount)
        except OSError:
            pass  # the supervisor is gone; it will not need to hear of it

    def forget_mount(self, mount: LocalMount) -> None:
        if self.mounts.get(mount.name) is mount:
            del self.mounts[mount.name]
        mount.ring.close()
