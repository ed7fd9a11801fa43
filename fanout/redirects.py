"""The master's slave-redirect table (Icecast-KH, PROTOCOL.md §2.2–2.6; issue 12). Pure.

Theory of operation: the supervisor owns one `RedirectTable`. Static `<redirect>` targets
never expire and are there whatever `<max-redirect-slaves>` says. A slave registering
through its stream-list poll is added while the table (static entries included) holds
fewer than `max-redirect-slaves`, and each later poll pushes its expiry on: to
`now + interval + GRACE` for a KH slave, to `now + MISSED_REFRESHES × refresh` for a
fanout slave on the fast schedule (it re-registers every `refresh` s, so it is out within
1.5 s of going away). A fanout slave's registration also carries its load (listeners,
capacity, health); `mark_dead` takes a slave out at once when the master learns it is
gone (its relay pulls closed, a failed /health probe) until its next registration.
Expired slaves are purged before any change, so a slave that stopped polling frees its
place. The supervisor sends `targets()` to every worker.

Choosing (`choose`, `Chooser`, `RedirectTable.pick`): never a target that is expired,
dead, unhealthy, full, the requester itself, or one whose complete mount list lacks the
listener's mount (`SlaveLoad.carries`), nor, for a listener that came over https, one
with no TLS port (a static `<redirect>` has none): sending it to a slave's plain port
would downgrade it to http without its knowing, so it is served or refused here as if no
slave were usable (see fanout/protocol/redirect.py); among the others, two drawn at random
and the less utilised of the two (listeners plus the redirects this chooser sent since
the target's last report, over capacity). Always taking the emptiest would send every
worker's (and every master's) arrivals between two reports to the same slave: a herd;
two random choices keep loads proportional to capacity (see the simulation in
tests/unit/test_redirect.py) while spreading simultaneous decisions. A target that
reports no load (a KH slave, a static `<redirect>`) is never full and counts as
NOMINAL_CAPACITY listeners of room filled only by our own redirects. Times are
CLOCK_MONOTONIC seconds, which every process on the host shares.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Collection, Sequence

from fanout.protocol.cluster import NodeListeners, node_name
from fanout.protocol.redirect import SlaveLoad

# Seconds a slave stays after its registered interval ran out without a new poll (KH).
GRACE = 10.0
# Fast-schedule registrations a slave may miss before it expires (× its refresh period).
MISSED_REFRESHES = 3
# Room assumed for a target that reports no load (2.4.4's default <clients>).
NOMINAL_CAPACITY = 256

ADDED, REFRESHED, FULL = "added", "refreshed", "full"


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    port: int
    expires: float | None  # monotonic seconds; None: a static <redirect>, never expires
    load: SlaveLoad | None = None  # None: reports no load (KH slave, static target)
    report: int = 0  # load reports received: what the redirects sent are counted against
    peer: str = ""  # the address its registering poll came from ("": unknown, static)
    dead: bool = False  # marked gone (relay pulls closed, failed probe) until it registers
    tls_port: int = 0  # its https port (a fanout slave's fanout-tls-port); 0: none

    @property
    def key(self) -> tuple[str, int]:
        return self.host, self.port

    def live(self, now: float) -> bool:
        return not self.dead and (self.expires is None or now < self.expires)

    def is_requester(self, addresses: Collection[str]) -> bool:
        return self.host in addresses or (self.peer != "" and self.peer in addresses)

    def utilisation(self, sent: int) -> float:
        """Share of its capacity in use, counting `sent` redirects since its last report."""
        if self.load is None:
            return sent / NOMINAL_CAPACITY
        if self.load.capacity <= 0:
            return float("inf")
        return (self.load.listeners + sent) / self.load.capacity

    def usable(self, now: float, sent: int, mount: str | None = None, tls: bool = False) -> bool:
        if not self.live(now) or (tls and self.tls_port <= 0):
            return False
        if self.load is None:
            return True
        if mount is not None and not self.load.carries(mount):
            return False
        return self.load.healthy and self.load.listeners + sent < self.load.capacity


def expiry(now: float, interval: float, load: SlaveLoad | None) -> float:
    """When a registration made at `now` runs out without a new one."""
    if load is not None and load.refresh is not None:
        return now + MISSED_REFRESHES * load.refresh
    return now + interval + GRACE


class RedirectTable:
    def __init__(self, limit: int, static: Sequence[tuple[str, int]] = ()) -> None:
        self.limit = limit
        self.static = {(host, port): Target(host, port, None) for host, port in static}
        self.dynamic: dict[tuple[str, int], Target] = {}
        self.chooser = Chooser()

    def reconfigure(self, limit: int, static: Sequence[tuple[str, int]]) -> None:
        """A reloaded config: new static targets and limit; registered slaves stay (KH
        forgets them until their next poll) as far as the new limit allows."""
        self.limit = limit
        self.static = {(host, port): Target(host, port, None) for host, port in static}
        room = max(0, limit - len(self.static))
        kept = [key for key in self.dynamic if key not in self.static][:room]
        self.dynamic = {key: self.dynamic[key] for key in kept}

    def register(self, host: str, port: int, interval: float, now: float,
                 load: SlaveLoad | None = None, peer: str = "", tls_port: int = 0) -> str:
        """A slave's poll: ADDED, REFRESHED, or FULL (not added: the table is full). A
        registration revives a slave marked dead; its TLS port is the one it says now."""
        self.purge(now)
        key = (host, port)
        if key in self.static:
            return REFRESHED  # already a target for good
        previous = self.dynamic.get(key)
        if previous is None and len(self.static) + len(self.dynamic) >= self.limit:
            return FULL
        report = (previous.report if previous is not None else 0) + (load is not None)
        self.dynamic[key] = Target(host, port, expiry(now, interval, load), load, report, peer,
                                   tls_port=tls_port)
        return ADDED if previous is None else REFRESHED

    def mark_dead(self, host: str, port: int, now: float) -> bool:
        """Stop choosing a slave known to be gone, until it registers again; False if no
        such live slave."""
        target = self.dynamic.get((host, port))
        if target is None or not target.live(now):
            return False
        self.dynamic[(host, port)] = replace(target, dead=True)
        return True

    def mark_dead_from(self, address: str, now: float) -> list[Target]:
        """`mark_dead` every live slave whose poll came from `address` (its relay pulls
        from there all closed); return those marked."""
        gone = [t for t in self.dynamic.values() if t.peer == address and t.live(now)]
        for target in gone:
            self.mark_dead(target.host, target.port, now)
        return gone

    def purge(self, now: float) -> list[Target]:
        """Forget the expired slaves; return them."""
        gone = [t for t in self.dynamic.values()
                if t.expires is not None and now >= t.expires]
        for target in gone:
            del self.dynamic[target.key]
        return gone

    def targets(self) -> tuple[Target, ...]:
        return (*self.static.values(), *self.dynamic.values())

    def pick(self, now: float, rng: random.Random, exclude: Collection[str] = (),
             mount: str | None = None, tls: bool = False) -> Target | None:
        """The target for one listener (see the module doc), counted as sent; None if no
        target is usable. `exclude`: the requester's addresses; `mount`: the one it asked
        for; `tls`: it came over https (only a target with a TLS port will do)."""
        return self.chooser.pick(self.targets(), now, rng, exclude, mount, tls)


class Chooser:
    """Chooses among a table's targets, counting the redirects it sent to each since the
    target's last load report (a worker holds one over the targets the supervisor sends)."""

    def __init__(self) -> None:
        self.sent: dict[tuple[str, int, int], int] = {}  # (host, port, report) → redirects

    def pick(self, targets: Sequence[Target], now: float, rng: random.Random,
             exclude: Collection[str] = (), mount: str | None = None,
             tls: bool = False) -> Target | None:
        current = {(*t.key, t.report) for t in targets}
        self.sent = {key: n for key, n in self.sent.items() if key in current}
        target = choose(targets, now, rng, exclude, self.sent, mount, tls)
        if target is not None:
            key = (*target.key, target.report)
            self.sent[key] = self.sent.get(key, 0) + 1
        return target


def choose(targets: Sequence[Target], now: float, rng: random.Random | None = None,
           exclude: Collection[str] = (),
           sent: dict[tuple[str, int, int], int] | None = None,
           mount: str | None = None, tls: bool = False) -> Target | None:
    """A usable target (see the module doc), or None if there is none. `sent`: redirects
    already sent to each (host, port, report) since that report; nothing is counted here;
    `mount`: the listener's (None: any target will do); `tls`: the listener came over
    https, so only a target with a TLS port will do."""
    counts = sent if sent is not None else {}

    def sent_to(target: Target) -> int:
        return counts.get((*target.key, target.report), 0)

    usable = [t for t in targets
              if t.usable(now, sent_to(t), mount, tls) and not t.is_requester(exclude)]
    if len(usable) <= 1:
        return usable[0] if usable else None
    first, second = (rng or random).sample(usable, 2)
    return first if first.utilisation(sent_to(first)) <= second.utilisation(sent_to(second)) else second


def slave_listeners(targets: Sequence[Target], now: float) -> list[NodeListeners]:
    """The live targets that report their load, as cluster nodes (issue 12 §3): what a
    worker adds to its own listeners for the cluster totals."""
    return [NodeListeners(node_name(t.host, t.port), t.load.listeners, t.load.mounts)
            for t in targets if t.load is not None and t.live(now)]
