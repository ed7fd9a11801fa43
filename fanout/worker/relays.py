"""The relay pulls this worker runs: started, stopped, retried and woken as the supervisor
says (StartRelay, StopRelay, RetryRelay, WakeRelay; `main.py` dispatches them here).

Which worker runs which pull is the supervisor's decision (`fanout/supervisor/relays.py`);
a worker only runs what it is given, at most one pull per mount.
"""
from __future__ import annotations

from fanout.relay.plan import RelaySpec
from fanout.worker.relay import RelayPull
from fanout.worker.relay_demand import OnDemandPull
from fanout.worker.state import Worker


def start_relay(worker: Worker, spec: RelaySpec, resume: bool) -> None:
    """Run `spec`'s pull here (replacing one for the same mount); with `resume` it first
    takes over the mount as it is."""
    stop_relay(worker, spec.mount)
    pull = (OnDemandPull if spec.on_demand else RelayPull)(worker, spec, resume)
    worker.relays[spec.mount] = pull
    pull.start()


def stop_relay(worker: Worker, mount: str) -> None:
    """Stop the pull of `mount`, if it runs here; its mount is left as it is."""
    pull = worker.relays.pop(mount, None)
    if pull is not None:
        pull.stop()


def retry_relay(worker: Worker, mount: str) -> None:
    pull = worker.relays.get(mount)
    if pull is not None:
        pull.retry_now()


def wake_relay(worker: Worker, mount: str) -> None:
    pull = worker.relays.get(mount)
    if pull is not None:
        pull.demanded()


def stop_relays(worker: Worker) -> None:
    for mount in list(worker.relays):
        stop_relay(worker, mount)
