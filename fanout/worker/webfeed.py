"""The status page's live feed in one worker: what every open event stream shows.

Theory of operation: a worker has one `StatusFeed`. While at least one event stream
(`/status-events`, `web.py`) is open, one greenlet keeps `views` current (the public
mounts as the page's rows show them) and every stream sends what changed. Working it out
costs a gather (listener peaks live in every worker), so the greenlet does it only when
a cheap local look says something a row shows may have changed (`look`: titles, names,
listener counts — each ring sums every worker's count, no round trip):

- at once when the supervisor told this worker a mount came, changed or ended
  (`mounts_changed`, called by `main.py` for MountUp, MountChanged and MountDown);
- else every LOOK_INTERVAL s, for listener counts, which change without a message;
- and never more often than every MIN_REFRESH s, however busy the mounts are.

Each refresh that changes the views wakes the streams (`updated` is swapped for a new
event and the old one set), which then send `sse.changes(before, after)`. With no stream
open, the greenlet ends and the feed costs nothing. How many streams one worker serves at
once is bounded (MAX_STREAMS, `admit`).
"""
from __future__ import annotations

from typing import Callable

import gevent
from gevent.event import Event

from fanout import supervised
from fanout.protocol.sse import Views

# Seconds between two local looks for changes nobody announces (listener counts).
LOOK_INTERVAL = 1.0
# Fewest seconds between two refreshes (each is a gather across the workers).
MIN_REFRESH = 0.25
# Event streams one worker serves at once: each holds a socket, a greenlet and a client
# slot for as long as a page stays open; beyond this the page falls back to reloading.
MAX_STREAMS = 64


class StatusFeed:
    """The shared views and the streams waiting for their next change."""

    def __init__(self) -> None:
        self.views: Views = {}
        self.ready = Event()  # the views were worked out since the feed (re)started
        self.updated = Event()  # set (and replaced) whenever the views change
        self.changed = Event()  # a mount came, changed or ended since the last look
        self.streams = 0
        self.greenlet: gevent.Greenlet | None = None

    def mounts_changed(self) -> None:
        """The supervisor told this worker of a mount's change: look at once."""
        self.changed.set()

    def admit(self) -> bool:
        """Count one more stream unless MAX_STREAMS are open; False: refuse it."""
        if self.streams >= MAX_STREAMS:
            return False
        self.streams += 1
        return True

    def leave(self) -> None:
        self.streams -= 1

    def start(self, look: Callable[[], object], refresh: Callable[[], Views]) -> None:
        """Keep the views current while streams are open (a no-op if it already does).
        `look` is cheap and local; `refresh` works the views out (a gather)."""
        if self.greenlet is None or self.greenlet.dead:
            self.ready.clear()
            self.greenlet = supervised.spawn("worker.status_feed", self.run, look, refresh,
                                             restart=True)

    def run(self, look: Callable[[], object], refresh: Callable[[], Views]) -> None:
        seen: object = None
        first = True
        while self.streams > 0:
            self.changed.clear()  # a change from now on cuts the wait below short
            current = look()
            if first or current != seen:
                first, seen = False, current
                self.publish(refresh())
                gevent.sleep(MIN_REFRESH)
            self.changed.wait(LOOK_INTERVAL)

    def publish(self, views: Views) -> None:
        """New views: wake every stream if they differ from the last."""
        changed = views != self.views
        self.views = views
        self.ready.set()
        if changed:
            woken, self.updated = self.updated, Event()
            woken.set()
