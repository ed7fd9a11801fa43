"""The lifecycle tables (fanout.lifecycle): where each event leads, and that nothing else moves."""
from __future__ import annotations

import pytest

from fanout.lifecycle import (
    MOUNT_TRANSITIONS, RELAY_TRANSITIONS, IllegalTransition, MountEvent, MountState, RelayEvent,
    RelayState, next_mount_state, next_relay_state,
)

R, RE = RelayState, RelayEvent
M, ME = MountState, MountEvent


def walk(step, state, events):
    for event in events:
        state = step(state, event)
    return state


def test_an_always_on_pull_connects_streams_holds_resumes_and_backs_off():
    path = [RE.CONNECT, RE.STREAM, RE.DROP, RE.RESUME, RE.SWITCH, RE.BACK_OFF, RE.CONNECT]
    states = []
    state = R.IDLE
    for event in path:
        state = next_relay_state(state, event)
        states.append(state)
    assert states == [R.CONNECTING, R.STREAMING, R.RECONNECTING, R.STREAMING, R.STREAMING,
                      R.RETRYING, R.CONNECTING]


def test_an_on_demand_pull_hangs_up_and_waits_for_listeners_after_a_back_off():
    assert walk(next_relay_state, R.IDLE, [RE.CONNECT, RE.STREAM, RE.HANG_UP]) is R.IDLE
    assert walk(next_relay_state, R.IDLE, [RE.CONNECT, RE.BACK_OFF, RE.WAIT]) is R.IDLE


@pytest.mark.parametrize("state", [R.CONNECTING, R.STREAMING, R.RECONNECTING])
def test_any_attempt_under_way_may_back_off(state):
    assert next_relay_state(state, RE.BACK_OFF) is R.RETRYING


@pytest.mark.parametrize("state, event", [
    (R.IDLE, RE.STREAM), (R.IDLE, RE.BACK_OFF), (R.RETRYING, RE.STREAM),
    (R.RECONNECTING, RE.DROP), (R.CONNECTING, RE.HANG_UP), (R.RETRYING, RE.BACK_OFF),
])
def test_an_event_the_relay_state_does_not_list_raises(state, event):
    with pytest.raises(IllegalTransition, match=f"{event.name} in state {state.name}"):
        next_relay_state(state, event)


def test_every_relay_state_is_reachable_and_has_a_way_out():
    targets = {to for row in RELAY_TRANSITIONS.values() for to in row.values()}
    assert targets == set(RelayState) and set(RELAY_TRANSITIONS) == set(RelayState)
    assert all(RELAY_TRANSITIONS[state] for state in RelayState)


def test_relay_states_show_as_their_lowercase_names():
    assert [state.value for state in RelayState] == [
        "idle", "connecting", "streaming", "reconnecting", "retrying"]


def test_a_mount_is_held_while_its_relay_reconnects_and_then_serves_again():
    assert walk(next_mount_state, M.LIVE, [ME.HOLD]) is M.HELD
    assert walk(next_mount_state, M.LIVE, [ME.HOLD, ME.RESUME]) is M.LIVE


@pytest.mark.parametrize("start", [M.LIVE, M.HELD])
def test_a_mount_ends_then_is_forgotten(start):
    assert walk(next_mount_state, start, [ME.END]) is M.ENDED
    assert walk(next_mount_state, start, [ME.END, ME.FORGET]) is M.GONE


@pytest.mark.parametrize("state, event", [
    (M.LIVE, ME.FORGET), (M.LIVE, ME.RESUME), (M.HELD, ME.HOLD), (M.ENDED, ME.HOLD),
    (M.ENDED, ME.END), (M.GONE, ME.FORGET), (M.GONE, ME.END),
])
def test_an_event_the_mount_state_does_not_list_raises(state, event):
    with pytest.raises(IllegalTransition):
        next_mount_state(state, event)


def test_a_gone_mount_takes_no_event_and_every_other_state_can_end():
    assert MOUNT_TRANSITIONS[M.GONE] == {}
    assert [s for s in MountState if ME.END in MOUNT_TRANSITIONS[s]] == [M.LIVE, M.HELD]
