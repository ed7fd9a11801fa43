"""Which worker runs each relay pull, and telling the workers: the supervisor's side of
relaying. The supervisor decides; it never reads a media byte.

Theory of operation: the planners (the master poller, the configured `<relay>`s) start
and stop relays here (`start_relay`, the RelayHost of fanout/relay/). Each relay gets an
owner from `RelayOwnership` (least loaded, only workers that booted) and a `StartRelay`;
the pull in that worker claims the mount as its writer, as a source's worker does, and
reports its state (`RelayStatus`, `RelayStream`: the supervisor puts them in the mount's
info for every worker) and its ended attempts (`RelayEnded`: a slave re-asks its master).
Stopping a relay ends its mount here (listeners to its fallback) and tells its owner
(`StopRelay`). Relays wait as orphans until the first workers booted, then are spread.

A worker's death (`worker_died`) moves its pulls at once: their mounts are kept, held
(newcomers wait or go elsewhere, listeners on the other workers stay), and each goes to
a live worker with `StartRelay(spec, info)` and the ring's fd, whose pull continues the
same ring (spliced, fanout/ringio.py). A worker added later (a replacement) takes its
share (`rebalance`): the old owner is told to stop (`StopRelay(hand_over)`) and only its
`RelayStopped` starts the new one, so a ring never has two writers.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Sequence

from fanout.lifecycle import RelayState
from fanout.messages import (
    DemandRelay, RelayEnded, RelayStopped, RetryRelay, StartRelay, StopRelay, WakeRelay,
)
from fanout.mountinfo import MountInfo, with_relay
from fanout.registry import NO_WRITER
from fanout.relay.plan import RelaySpec
from fanout.supervisor.mounts import Mounts
from fanout.supervisor.ownership import RelayOwnership
from fanout.supervisor.pool import WorkerHandle, WorkerPool

log = logging.getLogger("fanout.supervisor")


@dataclass(eq=False)
class Relay:
    """A relay that runs (the planners' RelayRun), wherever its pull does."""

    spec: RelaySpec
    on_ended: Callable[[], None]
    relays: "Relays"

    def stop(self) -> None:
        self.relays.stop(self.spec.mount)

    def retry_now(self) -> None:
        self.relays.retry(self.spec.mount)


def held(info: MountInfo) -> MountInfo:
    """A relayed mount's info while no pull writes it: an on-demand one is not connected
    (newcomers wait for it), another reconnecting (newcomers are not served it)."""
    if info.on_demand:
        return with_relay(info, state=RelayState.IDLE, connected=False)
    return with_relay(info, state=RelayState.RECONNECTING)


class Relays:
    def __init__(self, pool: WorkerPool, mounts: Mounts) -> None:
        self.pool = pool
        self.mounts = mounts
        self.ownership = RelayOwnership([])  # workers join once booted
        self.running: dict[str, Relay] = {}
        self.handing: dict[str, int] = {}  # mount -> the worker stopping it for another
        self.open = False  # workers take relays once the first ones all booted

    # -- the planners' RelayHost ----------------------------------------------------------------

    def start_relay(self, spec: RelaySpec, on_ended: Callable[[], None]) -> Relay:
        relay = Relay(spec, on_ended, self)
        self.running[spec.mount] = relay
        owner = self.ownership.assign(spec.mount)
        if owner is not None:
            self.send_start(owner, spec.mount)
        return relay

    def stop(self, mount: str) -> None:
        """Stop the relay of `mount` wherever it runs, and end its mount."""
        if self.running.pop(mount, None) is None:
            return
        owners = {self.ownership.owner_of(mount), self.handing.pop(mount, None)}
        self.ownership.release(mount)
        for owner in owners - {None}:
            assert owner is not None
            self.send(owner, StopRelay(mount))
        self.mounts.end_relay(mount)

    def retry(self, mount: str) -> None:
        owner = self.ownership.owner_of(mount)
        if owner is not None and mount not in self.handing:
            self.send(owner, RetryRelay(mount))

    def owns(self, mount: str, worker: int) -> bool:
        """Whether `worker` runs the pull of relay `mount` now (it may claim the mount)."""
        return mount in self.running and mount not in self.handing and \
            self.ownership.owner_of(mount) == worker

    # -- workers coming and going ---------------------------------------------------------------

    def worker_booted(self, index: int) -> None:
        """Worker `index` serves: once all of the first ones do, the relays are spread over
        them; a later one (a replacement) takes its share."""
        if not self.open:
            if self.pool.all_booted():
                self.open = True
                for worker in sorted(self.pool.workers):
                    self.ownership.owner_joined(worker)
                self.ownership.rebalance()  # nothing was sent yet: just the first owners
                for mount in sorted(self.running):
                    self.start_at_owner(mount)
            return
        for mount, owner in self.ownership.owner_joined(index).items():
            if owner is not None:
                self.send_start(owner, mount)
        for mount, old, new in self.ownership.rebalance():
            self.hand_over(mount, old)

    def worker_died(self, index: int) -> None:
        """Move the dead worker's pulls to the others at once, keeping (holding) their
        mounts; called before its mounts are forgotten."""
        for mount in [m for m, worker in self.handing.items() if worker == index]:
            del self.handing[mount]  # it stopped writing, for good
            self.start_at_owner(mount)
        for mount, owner in self.ownership.owner_left(index).items():
            record = self.mounts.relay_record(mount)
            if record is not None:
                record.owner = NO_WRITER
                self.mounts.change_info(record, held(record.info))
            if owner is not None and mount not in self.handing:
                self.send_start(owner, mount)
            log.info("relay %s: its worker %d died; %s", mount, index,
                     "waiting for a worker" if owner is None else f"moved to worker {owner}")

    def hand_over(self, mount: str, old: int) -> None:
        """Move `mount`'s pull from worker `old` to its new owner: stop it there first."""
        if mount in self.handing:
            return  # stopping already: its RelayStopped starts it at its (new) owner
        record = self.mounts.relay_record(mount)
        if record is None:  # not streaming: no ring to hand on
            self.send(old, StopRelay(mount))
            self.start_at_owner(mount)
            return
        self.handing[mount] = old
        self.mounts.change_info(record, held(record.info))
        self.send(old, StopRelay(mount, hand_over=True))
        log.info("relay %s: worker %d stops it, handing it on to worker %s", mount, old,
                 self.ownership.owner_of(mount))

    def start_at_owner(self, mount: str) -> None:
        owner = self.ownership.owner_of(mount)
        if owner is not None:
            self.send_start(owner, mount)

    def send_start(self, owner: int, mount: str) -> None:
        """Have `owner` run `mount`'s pull; a mount that exists goes with its ring."""
        relay = self.running[mount]
        record = self.mounts.relay_record(mount)
        if record is None:
            self.send(owner, StartRelay(relay.spec))
            return
        record.owner = owner
        self.send(owner, StartRelay(relay.spec, record.info), [record.ring.fd])
        log.info("relay %s: continued by worker %d", mount, owner)

    def send(self, worker: int, message: object, fds: Sequence[int] = ()) -> None:
        handle = self.pool.workers.get(worker)
        if handle is None:
            return  # gone: its death moves what it had
        try:
            handle.channel.send(message, fds=fds)
        except OSError as exc:
            log.warning("worker %d unreachable (%s)", worker, exc)  # its reader sees EOF

    # -- messages from workers ------------------------------------------------------------------

    def on_relay_ended(self, message: RelayEnded, handle: WorkerHandle) -> None:
        relay = self.running.get(message.mount)
        if relay is not None and self.ownership.owner_of(message.mount) == handle.index:
            relay.on_ended()

    def on_relay_stopped(self, message: RelayStopped, handle: WorkerHandle) -> None:
        if self.handing.get(message.mount) == handle.index:
            del self.handing[message.mount]
            self.start_at_owner(message.mount)

    def on_demand_relay(self, message: DemandRelay, handle: WorkerHandle) -> None:
        owner = self.ownership.owner_of(message.mount)
        if owner is not None and message.mount not in self.handing:
            self.send(owner, WakeRelay(message.mount))

