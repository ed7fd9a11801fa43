"""The supervisor's mounts: claims, releases, titles, info changes and fallback moves.

Theory of operation: `fanout.registry` decides who may have a mount and makes its ring;
this module tells the workers. A granted claim (a source's, from its worker, or a relay
pull's) is announced with `MountUp` (the ring's fd rides with it) before the claimant
hears `ClaimResult`. When a mount ends (its source left, was killed, its worker died, its
relay stopped) its listeners are first moved to the first live mount of its fallback
chain (same format family, §3.9) with the workers' own one-way `move_clients` query, then
`MountDown` goes out: one channel per worker keeps that order. A source or a streaming
relay coming to a mount with `<fallback-override>` takes back every listener of its live
fallback (2.4.4: all of them). The supervisor is the only writer of a ring's ICY block
(`set_metadata`): two updates on two workers cannot race.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Sequence

from fanout.config import Config
from fanout.gathers import NO_GATHER
from fanout.messages import (
    MOVE_CLIENTS, Claim, ClaimResult, Metadata, MountChanged, MountDown, MountUp, Query,
    Release, RelayStatus, RelayStream, Remount, StreamTags,
)
from fanout.mountinfo import MountInfo, renewed
from fanout.registry import ClaimRefused, MountRecord, MountRegistry
from fanout.supervisor.pool import WorkerHandle

log = logging.getLogger("fanout.supervisor")

Broadcast = Callable[[object, Sequence[int]], None]


class Mounts:
    def __init__(self, config: Config, broadcast: Broadcast) -> None:
        self.config = config  # the running one (the supervisor replaces it on SIGHUP)
        self.registry = MountRegistry()
        self.broadcast = broadcast  # to every worker
        # Called when a source client's mount ended (the master may list it again).
        self.on_source_ended: Callable[[], None] = lambda: None
        # Whether worker `w` runs the pull of relay `m` now (fanout/supervisor/relays.py):
        # only that worker may claim the relay's mount.
        self.runs_relay: Callable[[str, int], bool] = lambda m, w: False
        # Called with (mount, title) once a mount's title changed (the playlist log).
        self.on_title: Callable[[str, str], None] = lambda name, title: None

    def claim(self, name: str, owner: int, info: MountInfo) -> MountRecord:
        """Create `name`'s ring for `owner` and announce it; raises ClaimRefused. A relayed
        stream's claim (its info has a RelayInfo) comes only from the pull's worker."""
        relay = info.relay is not None
        if relay and not self.runs_relay(name, owner):
            raise ClaimRefused(403, "Mountpoint in use")  # a pull the supervisor moved away
        record = self.registry.claim(self.config, name, owner, info, relay=relay)
        self.broadcast(MountUp(name, record.info), [record.ring.fd])
        return record

    def release(self, name: str, owner: int) -> None:
        """End a mount `owner` holds; its listeners move to the first live mount of its
        fallback chain, else they are closed as it goes down."""
        record = self.registry.mounts.get(name)
        if record is None or record.owner != owner:
            return
        fallback = self.live_fallback(name)
        if fallback is not None:
            # The workers' own move query, sent one-way: it reaches each worker before
            # the MountDown below (one channel per worker keeps the order).
            self.move_listeners(name, fallback)
        if self.registry.release(name, owner) is not None:
            self.broadcast(MountDown(name), ())
            log.info("%s on %s ended", "relay" if record.info.relay else "source", name)
            if record.info.relay is None:
                self.on_source_ended()

    def end_relay(self, name: str) -> None:
        """End relayed mount `name`, whoever writes it (the relay stopped)."""
        record = self.relay_record(name)
        if record is not None:
            self.release(name, record.owner)

    def relay_record(self, name: str) -> MountRecord | None:
        """The record of `name` if a relay's stream has it (not a source)."""
        record = self.registry.mounts.get(name)
        return record if record is not None and record.info.relay is not None else None

    def worker_died(self, index: int) -> None:
        """End the mounts worker `index` fed and forget its listener counts and doorbell."""
        for name in self.registry.owned_by(index):
            self.release(name, index)
        self.registry.forget_worker(index)

    # -- messages from workers ---------------------------------------------------------------

    def on_claim(self, message: Claim, handle: WorkerHandle) -> None:
        name = message.mount
        try:
            try:
                record = self.claim(name, handle.index, message.info)
            except ClaimRefused as refused:
                handle.channel.send(ClaimResult(message.id, name, False, refused.status,
                                                refused.reason))
                return
            handle.channel.send(ClaimResult(message.id, name, True, 200, ""))
            log.info("%s on %s (worker %d, %s)", "relay" if record.info.relay else "source",
                     name, handle.index, record.info.content_type)
            if record.info.connected:  # not an idle on-demand relay: it has a stream
                self.override_fallback(name)
        except Exception:
            self.fail_claim(handle, message)
            raise  # reported by control.read_loop

    def fail_claim(self, handle: WorkerHandle, message: Claim) -> None:
        """A claim raised: its source gets 500 at once and the mount is not left held."""
        try:
            self.release(message.mount, handle.index)
        finally:
            try:
                handle.channel.send(ClaimResult(message.id, message.mount, False, 500,
                                                "Internal Server Error"))
            except OSError:
                pass  # the worker died meanwhile

    def on_release(self, message: Release, handle: WorkerHandle) -> None:
        self.release(message.mount, handle.index)

    def on_remount(self, message: Remount, handle: WorkerHandle) -> None:
        """The worker got these mounts' MountUp without the ring's fd: send it again."""
        for name in message.mounts:
            record = self.registry.mounts.get(name)
            if record is not None:
                handle.channel.send(MountUp(name, record.info, resent=True),
                                    fds=[record.ring.fd])

    def on_metadata(self, message: Metadata, handle: WorkerHandle) -> None:
        self.set_metadata(message.mount, message.block, message.title)

    def on_stream_tags(self, message: StreamTags, handle: WorkerHandle) -> None:
        """A new Ogg link's title, artist and codec stats, from the worker of its source."""
        record = self.registry.mounts.get(message.mount)
        if record is not None and record.owner == handle.index:
            self.change_info(record, dataclasses.replace(
                record.info, title=message.title, artist=message.artist, codec=message.codec))

    # -- info and metadata -------------------------------------------------------------------

    def set_metadata(self, name: str, block: bytes, title: str) -> None:
        """Write `block` into the ring's ICY block; stats show `title` (the whole of what
        plays now: an Ogg link's artist no longer applies)."""
        record = self.registry.mounts.get(name)
        if record is None:
            return
        record.ring.set_metadata(block)
        self.change_info(record, dataclasses.replace(record.info, title=title, artist=""))
        self.on_title(name, title)

    def change_info(self, record: MountRecord, info: MountInfo) -> None:
        record.info = info
        self.broadcast(MountChanged(record.name, info), ())

    def on_relay_status(self, message: RelayStatus, handle: WorkerHandle) -> None:
        """A relay pull's state and stats, for the info of the mount it writes."""
        record = self.written_by(message.mount, handle)
        if record is not None:
            self.change_info(record, dataclasses.replace(record.info, relay=message.relay))

    def on_relay_stream(self, message: RelayStream, handle: WorkerHandle) -> None:
        """A relay pull streams anew into the mount it writes: its info, the start kept."""
        record = self.written_by(message.mount, handle)
        if record is not None:
            self.change_info(record, renewed(record.info, message.info))

    def written_by(self, name: str, handle: WorkerHandle) -> MountRecord | None:
        """The record of relayed mount `name` if `handle`'s worker writes it (a message of
        a pull that was moved away since changes nothing)."""
        record = self.relay_record(name)
        return record if record is not None and record.owner == handle.index else None

    # -- fallback mounts (PROTOCOL.md §3.9, §5.1) ---------------------------------------------

    def live_fallback(self, name: str) -> str | None:
        """The first mount of `name`'s fallback chain that is live here, if any."""
        return next((m for m in self.config.fallback_chain(name) if m in self.registry.mounts),
                    None)

    def override_fallback(self, name: str) -> None:
        """A source (or relay) came to `name`: with <fallback-override> it takes back every
        listener of the mount its listeners would fall back to (2.4.4: all of them)."""
        if not self.config.resolve_mount(name).fallback_override:
            return
        fallback = self.live_fallback(name)
        if fallback is not None:
            log.info("%s is back: taking its listeners back from %s (fallback-override)", name, fallback)
            self.move_listeners(fallback, name)

    def move_listeners(self, mount: str, destination: str) -> None:
        """Every worker moves its listeners of `mount` (same format family only)."""
        self.broadcast(Query(NO_GATHER, MOVE_CLIENTS, {"mount": mount, "destination": destination}),
                       ())

    def local_mounts(self) -> set[str]:
        """Mounts held by source clients or configured relays: they win over the master's."""
        held = {name for name, rec in self.registry.mounts.items() if rec.info.relay is None}
        return held | self.registry.reserved
