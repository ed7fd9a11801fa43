"""What the supervisor's relay planners (the master poller, the configured `<relay>`s)
need from their host: starting a relay, and the handle of one that runs.

The planners decide which relays exist; where a relay's pull runs is the host's business
(the supervisor gives it to a worker: fanout/supervisor/relays.py). A planner never
touches a media byte.
"""
from __future__ import annotations

from typing import Callable, Protocol

from fanout.relay.plan import RelaySpec


class RelayRun(Protocol):
    """A relay that runs (wherever its pull does)."""

    spec: RelaySpec

    def stop(self) -> None:
        """Stop it; its mount ends (its listeners go to its fallback, as a source's do)."""

    def retry_now(self) -> None:
        """Cut its backoff short (its master answers again)."""


class RelayHost(Protocol):
    def start_relay(self, spec: RelaySpec, on_ended: Callable[[], None]) -> RelayRun:
        """Run `spec`; `on_ended` is called whenever an attempt of it ends (failed, or its
        stream ended)."""
