"""Fallback to a webroot file: `<fallback-mount>/jingle.mp3</fallback-mount>` (§3.9).

Theory of operation: 2.4.4 plays a `<fallback-mount>` that names a file under
`<paths><webroot>` as a hidden source of that name, read in a loop. Here each worker plays
such a file for its own listeners only: the first listener that needs it (arriving at a
mount whose fallback chain reaches the file before any live mount, or left on a mount that
ended) starts a *file mount*: a `LocalMount` named after the file, kept in
`worker.file_mounts` (in no `worker.mounts`: the supervisor, the other workers and the
stats do not know it), whose ring this worker creates itself. One supervised greenlet
(`play`) writes the file into it, again and again, through the one write path
(`RingFeed`), paced in real time at the file's byte rate (measured on its first MPEG or
ADTS frames), PACE_LEAD s ahead (2.4.4 reads it as fast as its source loop turns, §3.9;
a player wants real time). Its listeners are ordinary listeners of the pump; once it
had none for LINGER s the greenlet stops and the ring is freed.

When the mount comes back with `<fallback-override>`, it takes back every listener of the
file mount its chain reaches (2.4.4: all of them, whoever asked for what). Moves go only
between streams of the same format, as any fallback: an MP3 mount falls back only to an
MP3 file, an Ogg mount only to an Ogg file.

An Ogg Vorbis or Opus file is written page by page, each pass over it a new link of a
chained stream (`fanout.model.oggloop`: new serial numbers, granules that go on), paced by
its granule positions; its ring's ingest hands each link's header pages to listeners that
join it, as for a chained source. A file of any other kind (Ogg FLAC, say) is not played,
nor is one with no audio to pace it by (said when a whole pass held none).
"""
from __future__ import annotations

import logging
import os
import time
from typing import Protocol

import gevent

from fanout import supervised
from fanout.lifecycle import MountEvent, MountState
from fanout.model.ingest import OGG
from fanout.model.intro import SNIFF_BYTES, detect_format, id3v2_length, intro_mismatch
from fanout.model.mpeg import ADTS, MPEG, byte_rate
from fanout.model.ogg import OggPageScanner
from fanout.model.oggloop import OggLoop, granule_rate
from fanout.mountinfo import stream_info
from fanout.protocol.errors import ProtocolError
from fanout.protocol.webroot import content_type, webroot_file
from fanout.registry import ClaimRefused, create_ring
from fanout.ringio import RingFeed
from fanout.worker.files import MIME_TYPES, open_inside
from fanout.worker.pump import MOVE_RETRIES, mount_ended, move_between, same_format
from fanout.worker.state import LocalMount, Worker

log = logging.getLogger("fanout.fallback")

# Bytes per write into the file's ring: a quarter second of 128 kbit/s, so listeners get
# it smoothly, and far below the ring's GUARD.
FILE_CHUNK = 4096
# Seconds of the file written ahead of real time: a listener that starts on it gets that
# much at once (its player's buffer fills), and the pump's batching never starves it.
PACE_LEAD = 0.5
# Seconds behind its clock (the hub was held up) past which the writer starts its clock
# again instead of catching up: catching up would be a burst that could lap listeners.
MAX_BEHIND = 1.0
# Seconds a file mount with no listener keeps playing: a listener arriving, or coming back
# at once, does not restart it (and the one that started it is not added yet).
LINGER = 2.0


def serving_mount(worker: Worker, path: str) -> LocalMount | None:
    """The mount that serves a listener of `path`: its own if live, else the first of its
    <fallback-mount> chain that is a live mount or a playable webroot file (started if
    need be), as 2.4.4 walks the chain (§5.1)."""
    for name in (path, *worker.cfg.fallback_chain(path)):
        mount = worker.mounts.get(name)
        if mount is not None and mount.state is MountState.LIVE:
            return mount
        if mount is None and name != path:
            played = file_mount(worker, name)
            if played is not None:
                return played
    return None


def fall_back(worker: Worker, mount: LocalMount) -> None:
    """`mount` ended: its listeners still here (the supervisor moved none to a live
    fallback) go to the file its chain reaches first, if that format suits them."""
    if not mount.listeners:
        return
    for name in worker.cfg.fallback_chain(mount.name):
        known = worker.mounts.get(name)
        if known is not None:
            if not known.ended:
                return  # a live fallback: the supervisor's move was theirs
            continue
        played = file_mount(worker, name)
        if played is None:
            continue
        if not same_format(mount, played):
            log.warning("%s and fallback file %s are of different types: listeners not moved",
                        mount.name, name)
            return
        moved = move_between(worker, mount, played, {id(l) for l in mount.listeners}, MOVE_RETRIES)
        log.info("passing %d listeners of %s to fallback file %s", moved, mount.name, name)
        return


def take_back(worker: Worker, mount: LocalMount) -> None:
    """`mount` came live: with <fallback-override>, it takes back every listener of the
    file mount its chain reaches first (a live fallback is the supervisor's to override)."""
    if not mount.resolved.fallback_override or not mount.info.connected:
        return
    for name in worker.cfg.fallback_chain(mount.name):
        known = worker.mounts.get(name)
        if known is not None and not known.ended:
            return
        played = worker.file_mounts.get(name)
        if played is not None and played.listeners:
            moved = move_between(worker, played, mount, {id(l) for l in played.listeners},
                                 MOVE_RETRIES)
            log.info("%s is back: took %d listeners back from fallback file %s "
                     "(fallback-override)", mount.name, moved, name)
            return


# -- the file mount ---------------------------------------------------------------------------

def file_mount(worker: Worker, name: str) -> LocalMount | None:
    """The file mount playing webroot file `name` here, started if need be; None (said
    once until it changes) if `name` is no file this worker can play."""
    mount = worker.file_mounts.get(name)
    if mount is not None:
        return mount
    webroot = worker.cfg.paths.webroot
    if webroot is None:
        return None
    try:
        fd = open_inside(webroot, webroot_file(webroot, name))
    except ProtocolError:
        unusable(worker, name, "is no live mount and no file in the webroot")
        return None
    try:
        mount, clock, pace = start_mount(worker, name, fd)
    except (ValueError, OSError, ClaimRefused) as exc:
        os.close(fd)
        unusable(worker, name, f"is a file fanout cannot play: {exc}")
        return None
    worker.unusable_files.discard(name)
    worker.file_mounts[name] = mount
    supervised.spawn("worker.filemount", play, worker, mount, fd, clock, restart=False)
    log.info("fallback file %s: playing it here %s", name, pace)
    return mount


def unusable(worker: Worker, name: str, why: str) -> None:
    """Say why `name` is not played, once per worker until it is played."""
    if name not in worker.unusable_files:
        worker.unusable_files.add(name)
        log.warning("fallback %s %s", name, why)


class Clock(Protocol):
    """What a file mount writes of the file's bytes, and how much audio that is."""

    seconds: float  # audio in what `feed` returned so far

    def feed(self, data: bytes) -> bytes: ...

    def next_pass(self) -> None: ...


class ByteClock:
    """MPEG or ADTS bytes, written as they are, timed at the file's byte rate."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.seconds = 0.0

    def feed(self, data: bytes) -> bytes:
        self.seconds += len(data) / self.rate
        return data

    def next_pass(self) -> None:
        pass


def start_mount(worker: Worker, name: str, fd: int) -> tuple[LocalMount, Clock, str]:
    """A LocalMount (and its own ring) for the file open as `fd`, the clock that paces it
    and how (for the log). Raises ValueError when it cannot be played (not paceable, not
    its type's format)."""
    head = os.pread(fd, SNIFF_BYTES, 0)
    kind = detect_format(head)
    clock, pace = file_clock(head, kind)
    file_type = content_type(name, MIME_TYPES.of(worker.cfg))
    problem = intro_mismatch(head, file_type)
    if problem is not None:
        raise ValueError(problem)
    info = stream_info(file_type, "", format=kind)
    ring = create_ring(worker.cfg, name, info, doorbells=worker.doorbells)
    return LocalMount(name, ring, info, worker.cfg.resolve_mount(name)), clock, pace


def file_clock(head: bytes, kind: str) -> tuple[Clock, str]:
    """The clock for a file of format `kind` that starts with `head`, and how it paces.
    Raises ValueError for a file it cannot pace."""
    if kind == OGG:
        pages = OggPageScanner().feed(head)
        granules = granule_rate(pages[0]) if pages else None
        if granules is None:
            raise ValueError("only Ogg Vorbis and Opus files are paced (by their granules)")
        return OggLoop(), f"paced by its granules ({granules} Hz)"
    if kind not in (MPEG, ADTS):
        raise ValueError(f"only MPEG audio, AAC (ADTS) and Ogg files are paced, not {kind}")
    rate = byte_rate(head[id3v2_length(head):], kind)
    if rate is None:
        raise ValueError("too few frames to measure its bitrate")
    return ByteClock(rate), f"at {rate:.0f} bytes/s"


def play(worker: Worker, mount: LocalMount, fd: int, clock: Clock) -> None:
    """Write the file into `mount`'s ring in a loop, in real time by `clock` (PACE_LEAD s
    ahead), until it had no listener for LINGER s; then stop it."""
    feed = RingFeed(mount.ring, mount.info.format, label=f"fallback file {mount.name}")
    started, offset, pass_start = time.monotonic(), 0, 0.0
    quiet_since: float | None = None
    try:
        while True:
            now = time.monotonic()
            if mount.listeners or mount.fresh:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= LINGER:
                return
            chunk = os.pread(fd, FILE_CHUNK, offset)
            if not chunk:
                if clock.seconds <= pass_start:
                    log.warning("fallback file %s: no audio in a whole pass", mount.name)
                    return  # emptied since it was opened, or nothing to time it by
                offset, pass_start = 0, clock.seconds
                clock.next_pass()
                continue
            feed.feed(clock.feed(chunk))
            offset += len(chunk)
            due = started + clock.seconds - PACE_LEAD
            if now - due > MAX_BEHIND:
                started = now - clock.seconds
            gevent.sleep(max(0.0, due - time.monotonic()))
    finally:
        feed.close()
        os.close(fd)
        stop(worker, mount)


def stop(worker: Worker, mount: LocalMount) -> None:
    """The file mount ends: its listeners (if any) drain, then its ring is freed."""
    if worker.file_mounts.get(mount.name) is mount:
        del worker.file_mounts[mount.name]
    if not mount.ended:
        mount.advance(MountEvent.END)
    log.info("fallback file %s: stopped", mount.name)
    mount_ended(worker, mount)
