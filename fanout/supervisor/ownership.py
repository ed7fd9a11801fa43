"""Which process runs each relay pull: one decision, in one place. Pure.

Theory of operation: the supervisor's relays (`fanout/supervisor/relays.py`) ask it for
the owner of each relay they start and say when one stops. `RelayOwnership` gives each
relay the least-loaded candidate (the first such in candidate order; the candidates are
the workers that booted), remembers the choice, hands a dead owner's relays to the
others (`owner_left`), gives the orphans to a new candidate (`owner_joined`) and evens
the load out on request (`rebalance`).
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable


class RelayOwnership:
    """`candidates`: the workers (indexes) that may run pulls."""

    def __init__(self, candidates: Iterable[int]) -> None:
        self.candidates: list[int] = list(candidates)
        self.owners: dict[str, int] = {}  # relay mount -> its owner
        self.orphans: set[str] = set()  # relays whose owner left with nobody to take them

    def load(self) -> Counter[int]:
        """Relays per candidate (every candidate listed, idle ones with 0)."""
        counts = Counter({owner: 0 for owner in self.candidates})
        counts.update(self.owners.values())
        return counts

    def least_loaded(self) -> int | None:
        load = self.load()
        return min(self.candidates, key=lambda owner: load[owner], default=None)

    def assign(self, mount: str) -> int | None:
        """The owner of relay `mount`: the one it has, else the least-loaded candidate
        (None, and the relay waits as an orphan, while there is no candidate)."""
        if mount in self.owners:
            return self.owners[mount]
        owner = self.least_loaded()
        if owner is None:
            self.orphans.add(mount)
        else:
            self.owners[mount] = owner
        return owner

    def release(self, mount: str) -> None:
        """Relay `mount` stopped: it has no owner any more."""
        self.owners.pop(mount, None)
        self.orphans.discard(mount)

    def owner_of(self, mount: str) -> int | None:
        return self.owners.get(mount)

    def owner_left(self, owner: int) -> dict[str, int | None]:
        """`owner` died or stopped taking relays: each of its relays goes to the least
        loaded remaining candidate, in mount order. Returns {mount: new owner (None: an
        orphan until a candidate comes)}."""
        if owner in self.candidates:
            self.candidates.remove(owner)
        moved: dict[str, int | None] = {}
        for mount in sorted(m for m, o in self.owners.items() if o == owner):
            del self.owners[mount]
            moved[mount] = self.assign(mount)
        return moved

    def owner_joined(self, owner: int) -> dict[str, int | None]:
        """A new candidate: the orphans get owners (returned as in `owner_left`)."""
        if owner not in self.candidates:
            self.candidates.append(owner)
        waiting, self.orphans = sorted(self.orphans), set()
        return {mount: self.assign(mount) for mount in waiting}

    def rebalance(self) -> list[tuple[str, int, int]]:
        """Move relays from the most to the least loaded candidate until their counts
        differ by at most one; the moves as (mount, from, to), in the order made."""
        moves: list[tuple[str, int, int]] = []
        while self.candidates:
            load = self.load()
            busiest = max(self.candidates, key=lambda owner: load[owner])
            idlest = min(self.candidates, key=lambda owner: load[owner])
            if load[busiest] - load[idlest] <= 1:
                return moves
            mount = min(m for m, o in self.owners.items() if o == busiest)
            self.owners[mount] = idlest
            moves.append((mount, busiest, idlest))
        return moves
