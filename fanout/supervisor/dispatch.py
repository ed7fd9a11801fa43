"""What each message from a worker does in the supervisor: one table, by message type.

Every message type of `fanout.messages.TO_SUPERVISOR` has its handler here; a handler gets
the message and the `WorkerHandle` of the worker that sent it.
"""
from __future__ import annotations

from typing import Callable

from fanout.control import Dispatch
from fanout.messages import (
    Answer, Booted, Claim, DemandRelay, Gather, Metadata, RelayEnded, RelayStatus,
    RelayStopped, RelayStream, Release, Remount, SlavePullClosed, SlaveRegister, StreamTags,
)
from fanout.supervisor.gathering import Gathering
from fanout.supervisor.mounts import Mounts
from fanout.supervisor.pool import WorkerHandle
from fanout.supervisor.relays import Relays
from fanout.supervisor.slaves import SlaveRedirects


def worker_messages(mounts: Mounts, gathering: Gathering, slaves: SlaveRedirects,
                    relays: Relays,
                    on_booted: Callable[[Booted, WorkerHandle], None]) -> Dispatch[WorkerHandle]:
    table: Dispatch[WorkerHandle] = Dispatch("supervisor")
    table.on(Booted, on_booted)
    table.on(Claim, mounts.on_claim)
    table.on(Release, mounts.on_release)
    table.on(Remount, mounts.on_remount)
    table.on(Metadata, mounts.on_metadata)
    table.on(StreamTags, mounts.on_stream_tags)
    table.on(Gather, gathering.on_gather)
    table.on(Answer, gathering.on_answer)
    table.on(SlaveRegister, slaves.on_slave_register)
    table.on(SlavePullClosed, slaves.on_slave_pull_closed)
    table.on(RelayStatus, mounts.on_relay_status)
    table.on(RelayStream, mounts.on_relay_stream)
    table.on(RelayEnded, relays.on_relay_ended)
    table.on(RelayStopped, relays.on_relay_stopped)
    table.on(DemandRelay, relays.on_demand_relay)
    return table
