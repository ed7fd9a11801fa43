"""A worker's state: the typed `Worker` every handler gets, and the mounts it serves.

Theory of operation: one `Worker` per process holds everything that lives as long as the
worker does — its config, its supervisor link, the shared counters, the mounts it serves
(`LocalMount`: the mapped ring and its listeners), the slave-redirect targets, the
sources it serves (for killsource), its authenticated listeners' sessions, its htpasswd
files, and its own tallies (listener peaks, refusals). Nothing of that is module-level:
a handler reaches it through the `worker` it is given. This module changes state only in
small, named steps; serving clients is the handlers' job, reading the control channel
`main.py`'s.

A mount's lifecycle is `fanout.lifecycle`'s MountState: LIVE, HELD while its relay
reconnects (its info says so), ENDED once mount_down came (listeners drain), GONE once
forgotten (the ring is closed).
"""
from __future__ import annotations

import itertools
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Concatenate, Mapping, ParamSpec, Protocol, TypeVar, cast

import gevent
from gevent.event import Event
from gevent.lock import BoundedSemaphore

from fanout import core
from fanout.address_files import AddressFilter
from fanout.config import Config, ListenerAuth, ResolvedMount
from fanout.counters import MAX_WORKERS, Counters
from fanout.lifecycle import MountEvent, MountState, next_mount_state
from fanout.mountinfo import MountInfo
from fanout.protocol.auth import Credentials
from fanout.protocol.http import Request
from fanout.redirects import Chooser, Target
from fanout.worker.client import Connection
from fanout.worker.htpasswd_file import HtpasswdFiles
from fanout.worker.link import BUSY, ClaimAnswer, SupervisorLink
from fanout.worker.webfeed import StatusFeed

# At the clients limit, connections one worker reads a head from at once (to answer
# /health, connection.py): what a flood can hold besides the limit is this many fds for
# connection.OVER_LIMIT_HEAD_WAIT each.
OVER_LIMIT_READS = 16
# Refused requests by status, as /metrics names the reason (the client limit's refusals
# are counted in `Counters`).
REFUSAL_REASONS = {0: "closed", 400: "bad_request", 401: "unauthorized", 403: "forbidden",
                   404: "not_found", 503: "unavailable"}

R = TypeVar("R")
P = ParamSpec("P")


class RelayRun(Protocol):
    """A relay pull this worker runs (`relay.py`), as `relays.py` drives it."""

    def stop(self) -> None: ...
    def retry_now(self) -> None: ...
    def demanded(self) -> None: ...


@dataclass(slots=True)
class ListenerInfo:
    """What the worker keeps about a listener besides its core state (its `tag`)."""

    conn: Connection
    user_agent: str
    connected_at: float
    slave: bool = False  # a relay pull with the relay credentials: not counted as a listener
    closed: bool = False  # closed (dropped, killed, moved away): skip it if still queued


def info_of(listener: core.Listener) -> ListenerInfo:
    """The ListenerInfo of a listener this worker serves (`listeners.add_listener` and
    `pump.moved` set every tag)."""
    return cast(ListenerInfo, listener.tag)


@dataclass(slots=True)
class LocalMount:
    """This worker's view of one mount: the mapped ring and the listeners it serves."""

    name: str
    ring: core.Ring
    info: MountInfo
    resolved: ResolvedMount
    listeners: list[core.Listener] = field(default_factory=list)
    state: MountState = MountState.LIVE  # moved only by `advance` (fanout.lifecycle's table)
    slow_listeners: int = 0
    # The pump's view (pump.py): whether the worker's Waiter watches the ring, the
    # write_seq of the last full pass, when the next latency check is due (None: none),
    # whether it is idle, a listener left blocked, a full pass wanted at once (listeners
    # moved in), listeners that arrived since the last pass, the end of a drain.
    watched: bool = False
    passed: int = 0
    check_at: float | None = None
    idle: bool = False  # its ring's wake batch is pump.IDLE_BATCH
    behind: bool = False
    urgent: bool = False
    fresh: list[core.Listener] = field(default_factory=list)
    drain_until: float | None = None
    pending: int = 0  # listeners held until an on-demand relay's upstream is connected
    # Set (and replaced) at every info change and at the end: what held listeners wait on.
    changed: Event = field(default_factory=Event)
    # issue 11: the <intro> new listeners get first, once loaded: (its name, its bytes or
    # None if it could not be used), loaded again when a reload names another file.
    intro: tuple[str, bytes | None] | None = None

    @property
    def is_ogg(self) -> bool:
        return bool(self.ring.fmt == core.FORMAT_OGG)

    @property
    def ended(self) -> bool:
        """mount_down came: it drains (or is gone); no listener is added to it."""
        return self.state in (MountState.ENDED, MountState.GONE)

    def advance(self, event: MountEvent) -> None:
        self.state = next_mount_state(self.state, event)
        self.tell_waiters()

    def set_info(self, info: MountInfo) -> None:
        """A new info; a relay reconnecting holds the mount, streaming again resumes it."""
        self.info = info
        if self.state is MountState.LIVE and info.held:
            self.advance(MountEvent.HOLD)
        elif self.state is MountState.HELD and not info.held:
            self.advance(MountEvent.RESUME)
        else:
            self.tell_waiters()

    def tell_waiters(self) -> None:
        """Wake whoever waits for this mount to change (its info, its end)."""
        told, self.changed = self.changed, Event()
        told.set()


@dataclass(slots=True)
class Login:
    """One listener request, and what its mount's authentication made of it."""

    mount: str  # the mount asked for: the one whose <authentication> applies
    auth: ListenerAuth | None  # None: an open mount, or a slave
    conn: Connection
    request: Request
    credentials: Credentials | None
    timelimit: int | None = None  # seconds the auth server lets it stay
    info: ListenerInfo | None = None  # the pump's ListenerInfo, once served

    @property
    def user(self) -> str | None:
        return None if self.credentials is None else self.credentials.user

    @property
    def listening(self) -> bool:
        return self.info is None or not self.info.closed


class Sessions:
    """This worker's let-in listeners of protected mounts, by connection id
    (`listener_auth.py`)."""

    def __init__(self) -> None:
        self.by_id: dict[int, Login] = {}
        self.waiting: Counter[str] = Counter()  # mount -> listeners waiting on its auth server
        self.watcher: gevent.Greenlet | None = None  # ends the sessions of listeners that left

    def users_on(self, mount: str, exclude: int) -> list[str]:
        return [s.user for s in self.by_id.values()
                if s.mount == mount and s.conn.id != exclude and s.user is not None
                and s.listening]


class Tallies:
    """What only this worker counts: listener peaks it saw, requests it refused."""

    def __init__(self) -> None:
        # mount name -> (stream_start, highest summed listener count this worker has seen).
        self.peaks: dict[str, tuple[float, int]] = {}
        self.refusals: dict[str, int] = {}  # by REFUSAL_REASONS name

    def observe_listener_count(self, mount: LocalMount) -> None:
        """Called right after this worker published a new (higher) listener count.

        The summed count only rises when some worker adds a listener, and every worker
        reads the sum right after its own increment, so the highest sum ever reached is
        read by the worker whose increment made it. The one gap: another process's
        listener leaving between that store and this load (consecutive statements, no
        greenlet switch between them) hides a peak that lasted those nanoseconds; a peak
        that lasts longer than that is always seen.
        """
        start = mount.info.stream_start
        seen_start, peak = self.peaks.get(mount.name, (start, 0))
        if seen_start != start:  # a new source: a new stream, a new peak
            peak = 0
        self.peaks[mount.name] = (start, max(peak, mount.ring.listener_count()))

    def local_peak(self, mount: LocalMount) -> int:
        start, peak = self.peaks.get(mount.name, (0.0, 0))
        return peak if start == mount.info.stream_start else 0

    def count_refusal(self, status: int) -> None:
        reason = REFUSAL_REASONS.get(status, "other")
        self.refusals[reason] = self.refusals.get(reason, 0) + 1


class Pumping:
    """The state of the worker's one pump loop (pump.py): its doorbell, the mounts it was
    asked to serve at once, and the latency deadlines of the others."""

    def __init__(self, waiter: core.Waiter) -> None:
        self.waiter = waiter  # the worker's one waiting point, for every ring it serves
        self.loop: gevent.Greenlet | None = None
        self.asked: dict[int, LocalMount] = {}  # by id: fresh or moved-in listeners, or ended
        self.deadlines: list[tuple[float, int, LocalMount]] = []  # a heap; stale entries skipped
        self.order = itertools.count()  # ties in the heap, without comparing mounts
        self.waiting = False  # the loop sleeps on the doorbell: a kick must ring it
        self.passes = 0  # passes made and not yet counted in the shared counters


class Worker:
    """One worker process's state; every handler gets it."""

    def __init__(self, index: int, link: SupervisorLink, counters: Counters,
                 doorbells: core.Doorbells) -> None:
        self.index = index
        self.link = link
        self.counters = counters
        # Every worker's doorbell: rings this worker maps ring them when written here (a
        # source, a relay pull), and this worker's own is where its pump waits.
        self.doorbells = doorbells
        self.pumping = Pumping(core.Waiter(doorbells, index))
        self.config: Config | None = None  # the supervisor's first message sets it
        self.stopping = Event()
        self.mounts: dict[str, LocalMount] = {}
        self.lost_rings: set[str] = set()  # mounts whose MountUp came without its fd
        self.redirect_targets: tuple[Target, ...] = ()  # the master's live slaves
        self.redirect_chooser = Chooser()  # counts this worker's redirects between reports
        self.rng = random.Random()  # the chooser's "little randomness" (fanout.redirects)
        self.bound_ports: list[int] = []  # of the inherited listening sockets, in order
        self.sources: dict[str, Connection] = {}  # mount -> the source served here
        self.relays: dict[str, RelayRun] = {}  # mount -> the relay pull run here
        # issue 11: fallback files played here (filemount.py), by file name, in no
        # `mounts`; and the names said once to be no usable file (until they are).
        self.file_mounts: dict[str, LocalMount] = {}
        self.unusable_files: set[str] = set()
        self.sessions = Sessions()
        self.htpasswd = HtpasswdFiles()
        self.addresses = AddressFilter()  # issue 11: <paths><deny-ip>/<allow-ip>
        self.tallies = Tallies()
        self.status_feed = StatusFeed()  # the status page's live updates (webfeed.py)
        self.over_limit_reads = BoundedSemaphore(OVER_LIMIT_READS)
        self.client_ids = itertools.count(1)

    @property
    def cfg(self) -> Config:
        assert self.config is not None, "config arrives before any client is served"
        return self.config

    def next_client_id(self) -> int:
        """Connection ids unique across workers: the worker index is the low part."""
        return next(self.client_ids) * MAX_WORKERS + self.index

    def claim(self, mount: str, info: MountInfo) -> ClaimAnswer:
        """Ask the supervisor for a mount; the mount is in self.mounts when this says ok.
        503 when the supervisor does not answer in time or the ring could not be
        received (out of file descriptors)."""
        answer = self.link.claim(mount, info)
        if answer.ok and (mount not in self.mounts or mount in self.lost_rings):
            self.link.release(mount)
            return ClaimAnswer(False, 503, BUSY)
        return answer

    def gather(self, query: Callable[Concatenate[Worker, P], R], *args: P.args,
               **kwargs: P.kwargs) -> list[R | None]:
        """Run `query` (a @query handler) with `kwargs` on every worker, this one
        included; their answers, in any order (None from a worker whose handler failed).
        A worker that does not answer in time is left out."""
        assert not args, "query arguments cross the channel by name"
        sent: Mapping[str, object] = kwargs
        # Every worker runs the same code: the answers are what `query` returns.
        return cast("list[R | None]", self.link.gather(query.__name__, sent))

    def served_mounts(self) -> list[LocalMount]:
        """Every mount whose listeners this worker serves: the supervisor's and its own
        fallback files'."""
        return [*self.mounts.values(), *self.file_mounts.values()]

    def unwatch(self, mount: LocalMount) -> None:
        """The pump no longer serves `mount` here: its writer stops ringing this worker."""
        if mount.watched:
            self.pumping.waiter.unwatch(mount.ring)
            mount.watched = False
            mount.check_at = None

    def forget_mount(self, mount: LocalMount) -> None:
        """Close a drained mount's ring and drop it (idempotent)."""
        if mount.state is MountState.ENDED:
            mount.advance(MountEvent.FORGET)
        if self.mounts.get(mount.name) is mount:
            del self.mounts[mount.name]
        self.unwatch(mount)
        mount.ring.close()


# What a request is handed to: (worker, connection, request, bytes read past its head).
RequestHandler = Callable[[Worker, Connection, Request, bytes], None]
