"""The master's slave-redirect table (Icecast-KH, PROTOCOL.md §2.2–2.6). Pure.

Theory of operation: the supervisor owns one `RedirectTable`. Static `<redirect>` targets
never expire and are there whatever `<max-redirect-slaves>` says. A slave registering
through its stream-list poll is added while the table (static entries included) holds
fewer than `max-redirect-slaves`, and each later poll pushes its expiry to
`now + interval + GRACE`. Expired slaves are purged before any change, so a slave that
stopped polling frees its place. The supervisor sends `targets()` to every worker; a
worker picks uniformly among the targets still live at that moment (`choose`), so an
expired slave is never chosen even before the next purge. Times are CLOCK_MONOTONIC
seconds, which every process on the host shares.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

# Seconds a slave stays after its registered interval ran out without a new poll (KH).
GRACE = 10.0

ADDED, REFRESHED, FULL = "added", "refreshed", "full"


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    port: int
    expires: float | None  # monotonic seconds; None: a static <redirect>, never expires

    def live(self, now: float) -> bool:
        return self.expires is None or now < self.expires


class RedirectTable:
    def __init__(self, limit: int, static: Sequence[tuple[str, int]] = ()) -> None:
        self.limit = limit
        self.static = {(host, port): Target(host, port, None) for host, port in static}
        self.dynamic: dict[tuple[str, int], Target] = {}

    def reconfigure(self, limit: int, static: Sequence[tuple[str, int]]) -> None:
        """A reloaded config: new static targets and limit; registered slaves stay (KH
        forgets them until their next poll) as far as the new limit allows."""
        self.limit = limit
        self.static = {(host, port): Target(host, port, None) for host, port in static}
        room = max(0, limit - len(self.static))
        kept = [key for key in self.dynamic if key not in self.static][:room]
        self.dynamic = {key: self.dynamic[key] for key in kept}

    def register(self, host: str, port: int, interval: float, now: float) -> str:
        """A slave's poll: ADDED, REFRESHED, or FULL (not added: the table is full)."""
        self.purge(now)
        key = (host, port)
        target = Target(host, port, now + interval + GRACE)
        if key in self.dynamic:
            self.dynamic[key] = target
            return REFRESHED
        if key in self.static:
            return REFRESHED  # already a target for good
        if len(self.static) + len(self.dynamic) >= self.limit:
            return FULL
        self.dynamic[key] = target
        return ADDED

    def purge(self, now: float) -> list[Target]:
        """Forget the expired slaves; return them."""
        gone = [t for t in self.dynamic.values() if not t.live(now)]
        for target in gone:
            del self.dynamic[(target.host, target.port)]
        return gone

    def targets(self) -> tuple[Target, ...]:
        return (*self.static.values(), *self.dynamic.values())


def choose(targets: Sequence[Target], now: float, rng: random.Random | None = None) -> Target | None:
    """A target picked uniformly among the live ones, or None if none is live."""
    live = [t for t in targets if t.live(now)]
    if not live:
        return None
    return (rng or random).choice(live)
