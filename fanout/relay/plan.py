"""Reconciling the master's list with the relays we run (PROTOCOL.md §1.5). Pure.

`plan_relays(desired, running, local)` says which relays to start, keep and stop. A
relay is kept only if its spec is unchanged (same upstream and fetch path); a changed
one is stopped and started again. A mount a local source already holds is neither
started nor kept: the local source wins.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import AbstractSet, Mapping


@dataclass(frozen=True, slots=True)
class RelaySpec:
    """One mirrored mount: pull `fetch_path` from `host:port` into local `mount`."""

    mount: str
    host: str
    port: int
    fetch_path: str
    on_demand: bool = False
    credentials: tuple[str, str] | None = None  # sent on the pull (KH `/admin/streams?mount=`)


@dataclass(frozen=True, slots=True)
class Plan:
    start: tuple[RelaySpec, ...]
    keep: tuple[str, ...]
    stop: tuple[str, ...]


def plan_relays(desired: Mapping[str, RelaySpec], running: Mapping[str, RelaySpec],
                local: AbstractSet[str] = frozenset()) -> Plan:
    """Return what turns `running` into `desired` (both keyed by local mount name)."""
    wanted = {name: spec for name, spec in desired.items() if name not in local}
    keep = tuple(sorted(n for n, spec in running.items() if wanted.get(n) == spec))
    stop = tuple(sorted(n for n in running if n not in keep))
    start = tuple(wanted[n] for n in sorted(wanted) if n not in keep)
    return Plan(start, keep, stop)
