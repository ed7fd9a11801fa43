"""Lifecycles as state tables (after h11): a relay pull's, and a mount's as a worker sees it.

Theory of operation: a lifecycle is an enum of states, an enum of events and ONE table
`state -> {event: next state}`. `next_state(table, state, event)` is the only way to
move; an event the state does not list is a bug and raises `IllegalTransition` (never a
silent jump). Pure: no IO, no clock; the code that drives a lifecycle decides when an
event happened, this module only says where it leads.

Relay pull (`fanout/worker/relay.py`, `relay_demand.py`; the state is published in the
mount's `RelayInfo` for stats and for the workers):

    IDLE --CONNECT--> CONNECTING --STREAM--> STREAMING --DROP--> RECONNECTING --RESUME--> STREAMING
    IDLE --TAKE_OVER--> RECONNECTING   (a held mount whose previous pull's worker died or handed it on)
    CONNECTING / STREAMING / RECONNECTING --BACK_OFF--> RETRYING --CONNECT--> CONNECTING
    STREAMING --SWITCH--> STREAMING (a preferred upstream is back)
    STREAMING --HANG_UP--> IDLE, RETRYING --WAIT--> IDLE (on demand: wait for listeners)

Mount in a worker (`fanout/worker/state.py` LocalMount):

    LIVE --HOLD--> HELD --RESUME--> LIVE   (a relay reconnecting: listeners kept, newcomers not served)
    LIVE / HELD --END--> ENDED --FORGET--> GONE   (mount_down: listeners drain, then the ring is closed)
"""
from __future__ import annotations

from enum import Enum
from typing import Mapping, TypeVar


class IllegalTransition(Exception):
    """An event the current state does not take: a bug in the code driving the lifecycle."""


class RelayState(str, Enum):
    """Where a relay pull is; the value is what stats and /metrics show."""

    IDLE = "idle"  # on demand: nobody listens, no connection
    CONNECTING = "connecting"  # an attempt is under way
    STREAMING = "streaming"  # the upstream's bytes go into the ring
    RECONNECTING = "reconnecting"  # the upstream dropped; listeners are held meanwhile
    RETRYING = "retrying"  # backing off before the next attempt


class RelayEvent(Enum):
    CONNECT = "connect"  # an attempt starts
    STREAM = "stream"  # the upstream answered 2xx and the mount is ours
    SWITCH = "switch"  # a preferred upstream is back: stream from it instead
    DROP = "drop"  # the upstream dropped; hold the listeners and reconnect
    RESUME = "resume"  # the upstream is back while the listeners were held
    BACK_OFF = "back_off"  # the attempt failed or the stream ended: wait, then retry
    HANG_UP = "hang_up"  # on demand: the last listener left, the pull disconnected
    WAIT = "wait"  # on demand: the back-off is over, wait for listeners again
    TAKE_OVER = "take_over"  # a new pull continues a held mount another worker wrote


RELAY_TRANSITIONS: Mapping[RelayState, Mapping[RelayEvent, RelayState]] = {
    RelayState.IDLE: {RelayEvent.CONNECT: RelayState.CONNECTING,
                      RelayEvent.TAKE_OVER: RelayState.RECONNECTING},
    RelayState.CONNECTING: {RelayEvent.STREAM: RelayState.STREAMING,
                            RelayEvent.BACK_OFF: RelayState.RETRYING},
    RelayState.STREAMING: {RelayEvent.SWITCH: RelayState.STREAMING,
                           RelayEvent.DROP: RelayState.RECONNECTING,
                           RelayEvent.BACK_OFF: RelayState.RETRYING,
                           RelayEvent.HANG_UP: RelayState.IDLE},
    RelayState.RECONNECTING: {RelayEvent.RESUME: RelayState.STREAMING,
                              RelayEvent.BACK_OFF: RelayState.RETRYING},
    RelayState.RETRYING: {RelayEvent.CONNECT: RelayState.CONNECTING,
                          RelayEvent.WAIT: RelayState.IDLE},
}


class MountState(Enum):
    """A mount as one worker serves it."""

    LIVE = "live"  # serving its listeners and taking newcomers
    HELD = "held"  # its relay reconnects: listeners kept, newcomers go elsewhere or wait
    ENDED = "ended"  # mount_down came: listeners drain what is left in the ring
    GONE = "gone"  # drained: the ring is closed and the mount forgotten


class MountEvent(Enum):
    HOLD = "hold"  # its info says the relay is reconnecting
    RESUME = "resume"  # its info says it streams again
    END = "end"  # mount_down
    FORGET = "forget"  # drained (or nobody listened): close the ring


MOUNT_TRANSITIONS: Mapping[MountState, Mapping[MountEvent, MountState]] = {
    MountState.LIVE: {MountEvent.HOLD: MountState.HELD, MountEvent.END: MountState.ENDED},
    MountState.HELD: {MountEvent.RESUME: MountState.LIVE, MountEvent.END: MountState.ENDED},
    MountState.ENDED: {MountEvent.FORGET: MountState.GONE},
    MountState.GONE: {},
}

S = TypeVar("S", bound=Enum)
E = TypeVar("E", bound=Enum)


def next_state(table: Mapping[S, Mapping[E, S]], state: S, event: E) -> S:
    """The state `event` leads to from `state`; raises IllegalTransition if it leads nowhere."""
    try:
        return table[state][event]
    except KeyError:
        raise IllegalTransition(f"{event.name} in state {state.name}") from None


def next_relay_state(state: RelayState, event: RelayEvent) -> RelayState:
    return next_state(RELAY_TRANSITIONS, state, event)


def next_mount_state(state: MountState, event: MountEvent) -> MountState:
    return next_state(MOUNT_TRANSITIONS, state, event)
