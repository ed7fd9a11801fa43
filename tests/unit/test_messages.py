"""Control messages (fanout.messages) cross a real SEQPACKET socketpair as typed dataclasses,
with their fds, and each end dispatches them by type; MountInfo is made and changed in one
way (fanout.mountinfo)."""
from __future__ import annotations

import dataclasses
import inspect
import logging
import os

import pytest

from fanout import control, messages
from fanout.control import Dispatch
from fanout.config import Config
from fanout.lifecycle import RelayState
from fanout.messages import (
    TO_SUPERVISOR, TO_WORKER, Answer, Booted, Claim, ClaimResult, Gather, Gathered,
    DemandRelay, Metadata, MountChanged, MountDown, MountUp, NewConfig, Query, Redirects,
    RelayEnded, RelayStatus, RelayStopped, RelayStream, Release, Remount, RetryRelay,
    SlavePullClosed, SlaveRegister, StartRelay, Stop, StopRelay, StreamTags, WakeRelay,
)
from fanout.model.ingest import GENERIC, MPEG, OGG
from fanout.mountinfo import DEFAULT_CONTENT_TYPE, RelayInfo, renewed, stream_info, with_relay
from fanout.protocol.redirect import SlaveLoad
from fanout.redirects import Target
from fanout.relay.plan import RelaySpec

INFO = stream_info("audio/ogg", "10.0.0.1", headers=[("ice-name", "x")], user_agent="ua")
RELAYED = stream_info(None, "master", relay=RelayInfo("http://master:8000/a", RelayState.STREAMING))
ONE_OF_EACH = [
    Booted(1, 4321), Claim(3, "/a", INFO), Release("/a"), Metadata("/a", b"\x01x" + b"\0" * 15, "x"),
    StreamTags("/a", "Song", "Band", (("subtype", "Vorbis"),)), SlaveRegister("10.0.0.3", 8000, 5, SlaveLoad(3, 9, True, 0.5, (("/a", 3),)), "10.0.0.3"),
    SlavePullClosed("10.0.0.3"), Gather(7, "list_clients", {"mount": "/a"}),
    Answer(7, ["anything", 1]), Remount(("/a", "/b")), NewConfig(Config()),
    Redirects((Target("10.0.0.2", 8000, None),)), MountUp("/a", INFO, resent=True),
    MountDown("/a"), MountChanged("/a", RELAYED), ClaimResult(3, "/a", False, 403, "in use"),
    Stop(), Query(7, "list_clients", {"mount": "/a"}), Gathered(7, (None, [1])),
    RelayStatus("/a", RelayInfo("http://master:8000/a", RelayState.RECONNECTING, 2, 99)),
    RelayStream("/a", RELAYED), RelayEnded("/a"), RelayStopped("/a"), DemandRelay("/a"),
    StartRelay(RelaySpec("/a", "master", 8000, "/a"), RELAYED), StopRelay("/a", hand_over=True),
    RetryRelay("/a"), WakeRelay("/a"),
]


@pytest.fixture
def pair():
    parent, child = control.make_pair()
    ends = control.Channel(parent), control.Channel(child)
    yield ends
    for end in ends:
        end.close()


def test_every_message_class_is_frozen_slotted_and_in_exactly_one_direction():
    classes = [c for _, c in inspect.getmembers(messages, inspect.isclass)
               if dataclasses.is_dataclass(c) and c.__module__ == messages.__name__]
    assert sorted(c.__name__ for c in classes) == sorted(
        c.__name__ for c in TO_SUPERVISOR + TO_WORKER)
    assert not set(TO_SUPERVISOR) & set(TO_WORKER)
    for kind in classes:
        assert kind.__dataclass_params__.frozen and "__slots__" in vars(kind), kind
    assert sorted(type(m).__name__ for m in ONE_OF_EACH) == sorted(c.__name__ for c in classes)


@pytest.mark.parametrize("message", ONE_OF_EACH, ids=lambda m: type(m).__name__)
def test_each_message_crosses_the_channel_as_it_was_sent(pair, message):
    sender, receiver = pair
    sender.send(message)
    delivery = receiver.recv()
    assert delivery is not None and delivery.message == message
    assert type(delivery.message) is type(message) and delivery.fds == []


def test_a_rings_fd_rides_with_mount_up_and_an_untaken_one_is_closed(pair):
    sender, receiver = pair
    read_end, write_end = os.pipe()
    sender.send(MountUp("/a", INFO), fds=[read_end])
    delivery = receiver.recv()
    assert delivery is not None and not delivery.fds_lost
    received = delivery.take_fd()
    assert received is not None and received != read_end
    os.write(write_end, b"via the copy")
    assert os.read(received, 100) == b"via the copy"
    os.close(received)
    sender.send(MountUp("/b", INFO), fds=[read_end])
    leftover = receiver.recv()
    assert leftover is not None and len(leftover.fds) == 1
    kept = leftover.fds[0]
    leftover.close_fds()
    with pytest.raises(OSError):
        os.fstat(kept)
    for fd in (read_end, write_end):
        os.close(fd)


def test_the_peer_closing_ends_the_channel(pair):
    sender, receiver = pair
    sender.close()
    assert receiver.recv() is None


def test_dispatch_goes_by_type_with_its_context():
    seen = []
    table: Dispatch[str] = Dispatch("test")
    table.on(MountDown, lambda message, context: seen.append((message.mount, context)))
    table.on(Stop, lambda message, context: seen.append(("stop", context)))
    table.dispatch(MountDown("/a"), "worker 1")
    table.dispatch(Stop(), "worker 2")
    assert seen == [("/a", "worker 1"), ("stop", "worker 2")]


def test_an_unknown_message_type_is_logged_once_and_ignored(caplog):
    table: Dispatch[None] = Dispatch("worker 3")
    with caplog.at_level(logging.ERROR, logger="fanout.control"):
        for _ in range(3):
            table.dispatch(Booted(0, 1), None)
            table.dispatch("not a message", None)
    assert [r.getMessage() for r in caplog.records] == [
        "worker 3: no handler for control message Booted; ignored (told once)",
        "worker 3: no handler for control message str; ignored (told once)"]


def test_a_stream_without_content_type_is_told_audio_mpeg_and_ingested_as_mp3():
    info = stream_info(None, "1.2.3.4")
    assert (info.content_type, info.format) == (DEFAULT_CONTENT_TYPE, MPEG)
    assert stream_info("application/ogg", "").format == OGG
    assert stream_info(None, "", format=GENERIC).format == GENERIC  # a relay's rule (puller)
    assert info.connected and not info.held and not info.on_demand and info.relay is None


def test_relay_fields_change_into_a_new_info_and_a_renewed_stream_keeps_its_start():
    claimed = dataclasses.replace(RELAYED, stream_start=1000.0, title="old")
    held = with_relay(claimed, state=RelayState.RECONNECTING, bytes_read=5)
    assert held.held and held.relay == RelayInfo("http://master:8000/a", RelayState.RECONNECTING,
                                                bytes_read=5)
    assert claimed.relay is not None and claimed.relay.state is RelayState.STREAMING
    back = renewed(held, stream_info("audio/aac", "backup"))
    assert (back.stream_start, back.title, back.source_ip) == (1000.0, "", "backup")
    idle = with_relay(stream_info(None, "", relay=RelayInfo("u", RelayState.IDLE, on_demand=True)),
                      connected=False)
    assert idle.on_demand and not idle.connected
