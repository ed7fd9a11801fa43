"""Scenario definitions: ``bench/scenarios.toml`` parsed into frozen steps.

A scenario is one or more steps (one per listener count); a step is what one run
does: ``mounts`` sources (paced at a bitrate, or as fast as accepted) and a swarm (N
listeners per mount arriving at a rate, reading paced or as fast as they can, with or
without ICY metadata) for a duration. The scenario's ``kind`` says where the sources
go: to the server under test (``server``), to an Icecast master that the server under
test mirrors as a slave (``relay``), or a long run with faults (``soak``: churn,
metadata updates, a worker killed now and then). Command-line overrides replace
fields of every step.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fanout.bench import payload

DEFAULT_FILE = Path(__file__).resolve().parents[2] / "bench" / "scenarios.toml"
PACED_READ_RATE = 16_384  # bytes/s: a 128 kbit/s player with a little headroom
KINDS = ("server", "relay", "soak")
SERVER_KINDS = ("fanout", "icecast")
DEFAULTS: dict[str, Any] = {
    "description": "", "kind": "server", "servers": list(SERVER_KINDS), "mounts": 1,
    "listeners": 100, "arrival_rate": 0.0, "read": "paced", "read_rate": PACED_READ_RATE,
    "icy_metadata": False, "source": "paced", "source_bitrate": payload.BITRATE,
    "source_write_frames": 1, "duration": 20.0, "hold": None, "runs": 3,
    "until_degraded": False, "poll_interval": 5.0, "churn_rate": 0.0, "kill_interval": 0.0,
    "metadata_interval": 0.0, "rss_interval": 10.0,
}


class ScenarioError(ValueError):
    """A scenario file or override is wrong."""


@dataclass(frozen=True, slots=True)
class Faults:
    """What a soak does besides streaming; 0 switches a fault off."""

    churn_rate: float = 0.0  # listener connections/s closed and opened anew
    kill_interval: float = 0.0  # s between two SIGKILLs of a worker (servers with workers)
    metadata_interval: float = 0.0  # s between two /admin/metadata updates of each mount
    rss_interval: float = 10.0  # s between two RSS samples of each server process


@dataclass(frozen=True, slots=True)
class Step:
    """One measured configuration; ``read_rate`` 0 = fast, ``source_bitrate`` None = fast.

    ``listeners`` is per mount: a run has ``listeners * mounts`` in all."""

    scenario: str
    listeners: int
    arrival_rate: float
    read_rate: int
    icy: bool
    source_bitrate: int | None
    duration: float
    runs: int
    hold: float | None = None  # if set, duration = arrival time of the last listener + hold
    mounts: int = 1
    # Frames (384 bytes, 24 ms each) per source write: 1 is what encoders do (~40 writes/s).
    source_write_frames: int = 1
    poll_interval: float = 5.0  # relay: the slave's <master-update-interval>
    faults: Faults = Faults()

    @property
    def total_listeners(self) -> int:
        return self.listeners * self.mounts

    @property
    def name(self) -> str:
        if self.mounts == 1:
            return f"{self.scenario} n={self.listeners}"
        return f"{self.scenario} {self.mounts} mounts x {self.listeners}"


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    steps: tuple[Step, ...]
    until_degraded: bool
    kind: str = "server"
    servers: tuple[str, ...] = SERVER_KINDS  # the servers it runs on unless --servers says


def _load_toml(path: Path) -> dict[str, Any]:
    for name in ("tomllib", "tomli"):  # tomllib from Python 3.11 on
        try:
            toml = importlib.import_module(name)
        except ModuleNotFoundError:
            continue
        with open(path, "rb") as f:
            return dict(toml.load(f))
    raise ScenarioError("reading scenarios needs Python >= 3.11 or `pip install tomli`")


def load_scenarios(path: Path = DEFAULT_FILE) -> dict[str, Scenario]:
    """Return the scenarios of ``path`` by name; raise ScenarioError if it is invalid."""
    return {name: parse_scenario(name, table) for name, table in _load_toml(path).items()}


def parse_scenario(name: str, table: dict[str, Any]) -> Scenario:
    """Return the scenario described by one TOML table."""
    unknown = set(table) - set(DEFAULTS)
    if unknown:
        raise ScenarioError(f"scenario {name!r}: unknown keys {sorted(unknown)}")
    fields = {**DEFAULTS, **table}
    for key, allowed in (("read", ("paced", "fast")), ("source", ("paced", "fast")),
                         ("kind", KINDS)):
        if fields[key] not in allowed:
            raise ScenarioError(f"scenario {name!r}: {key} must be one of {allowed}")
    servers = tuple(fields["servers"])
    if not servers or set(servers) - set(SERVER_KINDS):
        raise ScenarioError(f"scenario {name!r}: servers must be some of {SERVER_KINDS}")
    counts = fields["listeners"]
    counts = [counts] if isinstance(counts, int) else list(counts)
    if not counts or any(not isinstance(n, int) or n < 0 for n in counts):
        raise ScenarioError(f"scenario {name!r}: listeners must be integers >= 0")
    if not isinstance(fields["mounts"], int) or fields["mounts"] < 1:
        raise ScenarioError(f"scenario {name!r}: mounts must be a positive integer")
    hold = None if fields["hold"] is None else float(fields["hold"])
    faults = Faults(churn_rate=float(fields["churn_rate"]),
                    kill_interval=float(fields["kill_interval"]),
                    metadata_interval=float(fields["metadata_interval"]),
                    rss_interval=float(fields["rss_interval"]))
    steps = tuple(_held(Step(
        scenario=name, listeners=n, arrival_rate=float(fields["arrival_rate"]),
        read_rate=int(fields["read_rate"]) if fields["read"] == "paced" else 0,
        icy=bool(fields["icy_metadata"]),
        source_bitrate=int(fields["source_bitrate"]) if fields["source"] == "paced" else None,
        duration=float(fields["duration"]), runs=int(fields["runs"]), hold=hold,
        mounts=fields["mounts"], source_write_frames=int(fields["source_write_frames"]),
        poll_interval=float(fields["poll_interval"]), faults=faults,
    )) for n in counts)
    return Scenario(name, str(fields["description"]), steps, bool(fields["until_degraded"]),
                    kind=fields["kind"], servers=servers)


def _held(step: Step) -> Step:
    """Return ``step`` with its duration derived from ``hold``, if it has one."""
    if step.hold is None or step.arrival_rate <= 0:
        return step
    return dataclasses.replace(step, duration=step.total_listeners / step.arrival_rate + step.hold)


def with_overrides(scenario: Scenario, listeners: list[int] | None = None,
                   duration: float | None = None, arrival_rate: float | None = None,
                   runs: int | None = None, icy: bool | None = None,
                   mounts: int | None = None) -> Scenario:
    """Return ``scenario`` with the given fields replaced in every step.

    ``listeners`` replaces the list of steps (one step per count); ``duration``
    replaces a duration derived from ``hold`` too.
    """
    if mounts is not None and mounts < 1:
        raise ScenarioError("--mounts must be >= 1")
    template = scenario.steps[0]
    steps = [dataclasses.replace(template, listeners=n) for n in listeners] if listeners \
        else list(scenario.steps)
    steps = [_held(dataclasses.replace(
        step, arrival_rate=step.arrival_rate if arrival_rate is None else arrival_rate,
        runs=step.runs if runs is None else runs, icy=step.icy if icy is None else icy,
        mounts=step.mounts if mounts is None else mounts,
    )) for step in steps]
    if duration is not None:
        steps = [dataclasses.replace(step, duration=duration, hold=None) for step in steps]
    return dataclasses.replace(scenario, steps=tuple(steps))
