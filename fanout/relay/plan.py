"""Reconciling the master's list with the relays we run (PROTOCOL.md §1.5). Pure.

`plan_relays(desired, running, local)` says which relays to start, keep and stop. A
relay is kept only if its spec is unchanged (same upstream and fetch path); a changed
one is stopped and started again. A mount a local source already holds is neither
started nor kept: the local source wins. Linear in the sizes of its inputs (dict and set
look-ups only), so a master listing thousands of mounts costs a moment, not minutes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import AbstractSet, Mapping


@dataclass(frozen=True, slots=True)
class RelaySpec:
    """One relayed mount: pull `fetch_path` from `host:port` into local `mount`.

    A master's mirrored mounts use the defaults of the last four fields; a configured
    `<relay>` sets them (PROTOCOL.md §3.1, §3.11).
    """

    mount: str
    host: str
    port: int
    fetch_path: str
    on_demand: bool = False
    credentials: tuple[str, str] | None = None  # Basic auth sent on the pull
    icy_metadata: bool = True  # send `Icy-MetaData: 1` (<relay-shoutcast-metadata>)
    # Further (host, port, path) to try, in order, when the ones before failed (KH <host>s,
    # 2.5 <upstream>s).
    alternates: tuple[tuple[str, int, str], ...] = ()
    retry_max: float | None = None  # longest wait between attempts (None: the puller's)
    run_on: float = 0.0  # on demand: seconds to stay connected after the last listener left
    # issue 12: the (host, port)s among the upstreams that speak https
    tls_upstreams: frozenset[tuple[str, int]] = frozenset()

    def upstreams(self) -> tuple[tuple[str, int, str], ...]:
        """Every (host, port, path) to try, first choice first."""
        return ((self.host, self.port, self.fetch_path), *self.alternates)

    @property
    def url(self) -> str:
        """The first upstream, as a URL for log lines."""
        return f"http://{self.host}:{self.port}{self.fetch_path}"


@dataclass(frozen=True, slots=True)
class Plan:
    start: tuple[RelaySpec, ...]
    keep: tuple[str, ...]
    stop: tuple[str, ...]


def plan_relays(desired: Mapping[str, RelaySpec], running: Mapping[str, RelaySpec],
                local: AbstractSet[str] = frozenset()) -> Plan:
    """Return what turns `running` into `desired` (both keyed by local mount name)."""
    wanted = {name: spec for name, spec in desired.items() if name not in local}
    kept = {name for name, spec in running.items() if wanted.get(name) == spec}
    stop = sorted(name for name in running if name not in kept)
    start = [wanted[name] for name in sorted(wanted) if name not in kept]
    return Plan(tuple(start), tuple(sorted(kept)), tuple(stop))
