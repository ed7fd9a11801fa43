"""Scenario definitions: ``bench/scenarios.toml`` parsed into frozen steps.

A scenario is one or more steps (one per listener count); a step is what one run
does: a source (paced at a bitrate, or as fast as accepted) and a swarm (N listeners
arriving at a rate, reading paced or as fast as they can, with or without ICY
metadata) for a duration. Command-line overrides replace fields of every step.
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
DEFAULTS: dict[str, Any] = {
    "description": "", "listeners": 100, "arrival_rate": 0.0, "read": "paced",
    "read_rate": PACED_READ_RATE, "icy_metadata": False, "source": "paced",
    "source_bitrate": payload.BITRATE, "duration": 20.0, "hold": None, "runs": 3,
    "until_degraded": False,
}


class ScenarioError(ValueError):
    """A scenario file or override is wrong."""


@dataclass(frozen=True, slots=True)
class Step:
    """One measured configuration; ``read_rate`` 0 = fast, ``source_bitrate`` None = fast."""

    scenario: str
    listeners: int
    arrival_rate: float
    read_rate: int
    icy: bool
    source_bitrate: int | None
    duration: float
    runs: int
    hold: float | None = None  # if set, duration = arrival time of the last listener + hold

    @property
    def name(self) -> str:
        return f"{self.scenario} n={self.listeners}"


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    steps: tuple[Step, ...]
    until_degraded: bool


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
    for key, allowed in (("read", ("paced", "fast")), ("source", ("paced", "fast"))):
        if fields[key] not in allowed:
            raise ScenarioError(f"scenario {name!r}: {key} must be one of {allowed}")
    counts = fields["listeners"]
    counts = [counts] if isinstance(counts, int) else list(counts)
    if not counts or any(not isinstance(n, int) or n < 1 for n in counts):
        raise ScenarioError(f"scenario {name!r}: listeners must be positive integers")
    hold = None if fields["hold"] is None else float(fields["hold"])
    steps = tuple(_held(Step(
        scenario=name, listeners=n, arrival_rate=float(fields["arrival_rate"]),
        read_rate=int(fields["read_rate"]) if fields["read"] == "paced" else 0,
        icy=bool(fields["icy_metadata"]),
        source_bitrate=int(fields["source_bitrate"]) if fields["source"] == "paced" else None,
        duration=float(fields["duration"]), runs=int(fields["runs"]), hold=hold,
    )) for n in counts)
    return Scenario(name, str(fields["description"]), steps, bool(fields["until_degraded"]))


def _held(step: Step) -> Step:
    """Return ``step`` with its duration derived from ``hold``, if it has one."""
    if step.hold is None or step.arrival_rate <= 0:
        return step
    return dataclasses.replace(step, duration=step.listeners / step.arrival_rate + step.hold)


def with_overrides(scenario: Scenario, listeners: list[int] | None = None,
                   duration: float | None = None, arrival_rate: float | None = None,
                   runs: int | None = None, icy: bool | None = None) -> Scenario:
    """Return ``scenario`` with the given fields replaced in every step.

    ``listeners`` replaces the list of steps (one step per count); ``duration``
    replaces a duration derived from ``hold`` too.
    """
    template = scenario.steps[0]
    steps = [dataclasses.replace(template, listeners=n) for n in listeners] if listeners \
        else list(scenario.steps)
    steps = [_held(dataclasses.replace(
        step, arrival_rate=step.arrival_rate if arrival_rate is None else arrival_rate,
        runs=step.runs if runs is None else runs, icy=step.icy if icy is None else icy,
    )) for step in steps]
    if duration is not None:
        steps = [dataclasses.replace(step, duration=duration, hold=None) for step in steps]
    return dataclasses.replace(scenario, steps=tuple(steps))
