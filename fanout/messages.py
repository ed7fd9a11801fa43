"""The control messages between the supervisor and its workers: one dataclass each. Pure.

Theory of operation: each message is a frozen, slotted dataclass; `fanout.control`
pickles it whole into one SEQPACKET datagram (a ring's fd rides beside it as SCM_RIGHTS),
and each end dispatches by the message's type through one table (`control.Dispatch`).
Both ends are our own processes, started from the same code, so a type is its own
schema. An end that gets a type it has no handler for logs it once and goes on.

The tables in docs/ARCHITECTURE.md are checked against TO_SUPERVISOR and TO_WORKER
(tests/unit/test_messages.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from fanout.config import Config
from fanout.mountinfo import MountInfo, RelayInfo
from fanout.protocol.redirect import SlaveLoad
from fanout.redirects import Target
from fanout.relay.plan import RelaySpec

# The query a worker runs to move its listeners of one mount to another (its handler is
# registered under this name in fanout/worker/admin_queries.py; the supervisor sends it
# one-way when a mount ends or a fallback-override source comes).
MOVE_CLIENTS = "move_clients"


# -- worker → supervisor ------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Booted:
    """The worker serves (it has its config and its listening sockets)."""

    worker: int
    pid: int


@dataclass(frozen=True, slots=True)
class Claim:
    """A source wants `mount`; answered by ClaimResult (MountUp comes first if granted)."""

    id: int
    mount: str
    info: MountInfo


@dataclass(frozen=True, slots=True)
class Release:
    """The source of `mount` left."""

    mount: str


@dataclass(frozen=True, slots=True)
class Metadata:
    """Put this ICY block into `mount`'s ring: the supervisor is its only metadata writer,
    so two updates on two workers cannot race."""

    mount: str
    block: bytes
    title: str


@dataclass(frozen=True, slots=True)
class StreamTags:
    """A new Ogg link on `mount` (its source's worker read the link's header pages): what
    stats show of it from now on (`fanout.model.link_tags`)."""

    mount: str
    title: str
    artist: str
    codec: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class SlaveRegister:
    """An authenticated stream-list poll carried a KH redirect registration (`load`: a
    fanout slave's load report, None from a KH slave; `peer`: the poll's address;
    `tls_port`: its https port, 0 if none; `bad_tls_port`: what it said instead of one)."""

    host: str
    port: int
    interval: int
    load: SlaveLoad | None = None
    peer: str = ""
    tls_port: int = 0
    bad_tls_port: str = ""


@dataclass(frozen=True, slots=True)
class SlavePullClosed:
    """A slave's relay pull from `address` failed and the worker holds no other pull from
    there: the slave may be gone (issue 12: out of the redirect rotation at once)."""

    address: str


@dataclass(frozen=True, slots=True)
class Gather:
    """Ask every worker (this one included) query `query` with `args`."""

    id: int
    query: str
    args: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Answer:
    """One worker's result of the query of gather `gather`."""

    gather: int
    result: object


@dataclass(frozen=True, slots=True)
class Remount:
    """These mounts' MountUp came without the ring's fd (out of fds): send them again."""

    mounts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RelayStatus:
    """The pull of relay `mount` (its writer) is at `relay`: state, reconnects, bytes read,
    connected. The supervisor puts it in the mount's info and tells every worker."""

    mount: str
    relay: RelayInfo


@dataclass(frozen=True, slots=True)
class RelayStream:
    """The pull of relay `mount` streams anew (reconnected, switched upstream, connected
    on demand): `info` is the mount's from now on, its start kept."""

    mount: str
    info: MountInfo


@dataclass(frozen=True, slots=True)
class RelayEnded:
    """An attempt of relay `mount` ended (it failed, or its stream ended): a slave asks its
    master again."""

    mount: str


@dataclass(frozen=True, slots=True)
class RelayStopped:
    """The pull of relay `mount` stopped here as StopRelay asked (`hand_over`): another
    worker may write the ring now."""

    mount: str


@dataclass(frozen=True, slots=True)
class DemandRelay:
    """A listener here waits for on-demand relay `mount`, which has no upstream yet."""

    mount: str


# -- supervisor → worker ------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class NewConfig:
    """The first message to a new worker, and again on every SIGHUP reload."""

    config: Config


@dataclass(frozen=True, slots=True)
class Redirects:
    """The slave-redirect table: after NewConfig to a new worker, and on every change."""

    targets: tuple[Target, ...]


@dataclass(frozen=True, slots=True)
class MountUp:
    """Map `mount`'s ring (the fd that rides with this message) and serve its listeners.
    `resent` answers a Remount."""

    mount: str
    info: MountInfo
    resent: bool = False


@dataclass(frozen=True, slots=True)
class MountDown:
    """`mount` ended: drop its ring once its listeners drained."""

    mount: str


@dataclass(frozen=True, slots=True)
class MountChanged:
    """`mount`'s info changed (a title, a relay's state)."""

    mount: str
    info: MountInfo


@dataclass(frozen=True, slots=True)
class ClaimResult:
    """The answer to Claim `id`."""

    id: int
    mount: str
    ok: bool
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop gracefully."""


@dataclass(frozen=True, slots=True)
class Query:
    """Run query `query` with `args` and Answer (the supervisor drops the answers of a
    query nobody waits for: `fanout.gathers.NO_GATHER`)."""

    gather: int
    query: str
    args: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StartRelay:
    """Run relay `spec`'s pull here. With `info` the mount exists and is held (its pull's
    worker died, or handed it on): continue its ring, whose fd rides with this message."""

    spec: RelaySpec
    info: MountInfo | None = None


@dataclass(frozen=True, slots=True)
class StopRelay:
    """Stop relay `mount`'s pull; its mount is not released here (the supervisor ends
    it), and with `hand_over` another worker takes it on: answer RelayStopped."""

    mount: str
    hand_over: bool = False


@dataclass(frozen=True, slots=True)
class RetryRelay:
    """The master answers again: cut relay `mount`'s backoff short."""

    mount: str


@dataclass(frozen=True, slots=True)
class WakeRelay:
    """Listeners wait for on-demand relay `mount`: connect to its upstream."""

    mount: str


@dataclass(frozen=True, slots=True)
class Gathered:
    """Every answer to the worker's Gather `id` (a worker that died or was too slow is
    left out)."""

    id: int
    answers: tuple[object, ...]


TO_SUPERVISOR = (Booted, Claim, Release, Metadata, StreamTags, SlaveRegister, SlavePullClosed,
                 Gather, Answer, Remount, RelayStatus, RelayStream, RelayEnded, RelayStopped,
                 DemandRelay)
TO_WORKER = (NewConfig, Redirects, MountUp, MountDown, MountChanged, ClaimResult, Stop,
             Query, Gathered, StartRelay, StopRelay, RetryRelay, WakeRelay)
