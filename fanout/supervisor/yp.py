"""YP directory listings (`<directory>`): the public mounts listed in each directory server.

Theory of operation. One supervised greenlet per `<directory>` (`YpDirectory`) drives the
listings of `fanout.protocol.yp` (whose pure functions say what each request is and when
the next is due) over `fanout.httpclient`. Each round, at most every YP_CHECK s:

1. **reconcile**: every mount the registry holds (sources and relays alike) whose stats
   say it is public (`<public>`, else the source's ice-public) gets a listing, its add due
   `add_delay` s later (2.4.4: a minute); a listing whose mount ended, stopped being
   public or got a new source is dropped, with a remove request if it was listed; a new
   title brings its touch forward (`title_changed`);
2. **send** what is due, one request at a time (2.4.4's YP thread does the same), each
   within the directory's `<yp-url-timeout>`. A directory that cannot be reached makes
   its other listings wait (`directory_unreachable`), as in 2.4.4.

The bodies are built from the same stats the admin pages show (`mount_stats`), so a
listing says what `/admin/stats` says. At stop, listed mounts are removed (within
STOP_DEADLINE s in all). On SIGHUP the directories are matched by URL: a kept one keeps
its listings, a dropped one removes them, a new one starts.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Mapping, Protocol

import gevent

from fanout import supervised
from fanout.config import Config
from fanout.config.hosting import Directory
from fanout.httpclient import FetchError, connect, request_head
from fanout.protocol.errors import ProtocolError
from fanout.protocol.stats import MountFigures, MountSettings, Stats, mount_stats
from fanout.protocol.yp import (
    YpAnswer, YpEntry, after_add, after_touch, directory_unreachable, is_public,
    listing_from_stats, listing_started, parse_answer, removal, render_add, render_request,
    render_touch, title_changed, touch_max_listeners, yp_server, yp_song,
)
from fanout.registry import MountRecord

log = logging.getLogger("fanout.yp")

# Longest wait (s) between two looks at the mounts: how late a mount that turned public,
# ended or changed its title is noticed.
YP_CHECK = 1.0
# Seconds the remove requests at stop may take in all (the server is going away).
STOP_DEADLINE = 3.0


class YpHost(Protocol):
    """What the listings need of the supervisor (`arbiter.Supervisor`)."""

    config: Config

    def mount_records(self) -> Mapping[str, MountRecord]:
        """Every live mount (the registry's)."""

    def listen_port(self) -> int:
        """The port listen URLs name (the first listen socket's, as bound)."""


@dataclass(frozen=True, slots=True)
class Listing:
    """One mount's listing in one directory, and what it was made for."""

    entry: YpEntry
    stream_start: float  # of the source it lists: a new source is a new listing
    title: str  # the title last seen, to notice a change


class YpDirectories:
    """Every `<directory>` of the running config, one `YpDirectory` each."""

    def __init__(self, host: YpHost, add_delay: float) -> None:
        self.host = host
        self.add_delay = add_delay  # seconds a mount is public before its add (2.4.4: 60)
        self.running: dict[str, YpDirectory] = {}  # by yp-url

    def apply(self, directories: tuple[Directory, ...]) -> None:
        """Start, keep or stop directories to match the config's (at start and on SIGHUP)."""
        wanted = {directory.yp_url: directory for directory in directories}
        for url in [url for url in self.running if url not in wanted]:
            self.running.pop(url).stop()
        for url, directory in wanted.items():
            if url in self.running:
                self.running[url].directory = directory
            else:
                self.running[url] = YpDirectory(self.host, directory, self.add_delay)
                self.running[url].start()

    def stop(self) -> None:
        """Remove every listing (bounded by STOP_DEADLINE in all) and stop."""
        directories, self.running = list(self.running.values()), {}
        for directory in directories:
            directory.halt()
        with gevent.Timeout(STOP_DEADLINE, False):
            for directory in directories:
                directory.remove_all()


class YpDirectory:
    """One directory server and its listings, driven by one supervised greenlet."""

    def __init__(self, host: YpHost, directory: Directory, add_delay: float) -> None:
        self.host = host
        self.directory = directory
        self.add_delay = add_delay
        self.listings: dict[str, Listing] = {}  # by mount
        self.removals: list[tuple[str, bytes]] = []  # (mount, remove body) still to send
        self.greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        log.info("YP: listing public mounts in %s", self.directory.yp_url)
        self.greenlet = supervised.spawn("supervisor.yp", self.run, restart=True)

    def halt(self) -> None:
        if self.greenlet is not None:
            self.greenlet.kill()
            self.greenlet = None

    def stop(self) -> None:
        """Dropped from the config: remove every listing now, then stop."""
        self.halt()
        with gevent.Timeout(STOP_DEADLINE, False):
            self.remove_all()

    def run(self) -> None:
        while True:
            self.reconcile(time.time())
            self.send_due()
            gevent.sleep(self.next_wake(time.time()))

    # -- which mounts ---------------------------------------------------------------------

    def reconcile(self, now: float) -> None:
        """Match the listings to the public mounts (see the module doc, step 1)."""
        public = {name: record for name, record in self.host.mount_records().items()
                  if is_public(self.stats_of(record))}
        for name, listing in list(self.listings.items()):
            record = public.get(name)
            if record is None or record.info.stream_start != listing.stream_start:
                self.drop(name)
            elif record.info.title != listing.title:
                self.listings[name] = replace(listing, title=record.info.title,
                                              entry=title_changed(listing.entry, now))
        for name, record in public.items():
            if name not in self.listings:
                entry = listing_started(now, self.directory.touch_interval, self.add_delay)
                self.listings[name] = Listing(entry, record.info.stream_start, record.info.title)

    def drop(self, name: str) -> None:
        body = removal(self.listings.pop(name).entry)
        if body is not None:
            self.removals.append((name, body))

    def stats_of(self, record: MountRecord) -> Stats:
        """The mount's stats as /admin/stats shows them (its listener figures aside)."""
        config, info = self.host.config, record.info
        r = config.resolve_mount(record.name)
        settings = MountSettings(hidden=r.hidden, max_listeners=r.max_listeners, public=r.public,
                                 stream_name=r.stream_name, stream_description=r.stream_description,
                                 stream_url=r.stream_url, genre=r.genre, bitrate=r.bitrate,
                                 subtype=r.subtype)
        figures = MountFigures(record.name, info.content_type, info.headers, info.source_ip,
                               info.user_agent, info.title, info.stream_start,
                               listeners=record.ring.listener_count(), listener_peak=0,
                               slow_listeners=0, bytes_read=0, bytes_sent=0, settings=settings)
        return mount_stats(figures, config.hostname, self.host.listen_port())

    # -- the requests ---------------------------------------------------------------------

    def send_due(self) -> None:
        """Send the removals, then every add and touch that is due (module doc, step 2)."""
        while self.removals:
            name, body = self.removals.pop(0)
            self.post(body, f"remove of {name}")
        for name in sorted(self.listings, key=lambda n: self.listings[n].entry.due):
            listing = self.listings.get(name)
            if listing is None or listing.entry.due > time.time():
                continue
            if not self.send(name, listing):
                self.unreachable(except_for=name)
                return

    def send(self, name: str, listing: Listing) -> bool:
        """Send `name`'s due add or touch and move its entry on; False if the directory
        could not be reached."""
        record = self.host.mount_records().get(name)
        if record is None:
            return True  # ended meanwhile: the next round drops it
        entry = listing.entry
        if entry.action == "add":
            body = render_add(listing_from_stats(self.stats_of(record),
                                                 self.host.config.resolve_mount(name).cluster_password))
        else:
            assert entry.sid is not None  # a touch follows a successful add
            body = render_touch(entry.sid, yp_song(None, record.info.title),
                                record.ring.listener_count(), self.max_listeners(name),
                                self.stats_of(record).get("subtype", ""))
        answer = self.post(body, f"{entry.action} of {name}")
        moved = after_add if entry.action == "add" else after_touch
        self.listings[name] = replace(listing, entry=moved(entry, answer, time.time()))
        if answer is not None and answer.ok and entry.action == "add":
            log.info("YP: %s listed in %s", name, self.directory.yp_url)
        return answer is not None

    def max_listeners(self, name: str) -> int:
        config = self.host.config
        return touch_max_listeners(config.resolve_mount(name).max_listeners, config.limits.clients)

    def unreachable(self, except_for: str) -> None:
        for name, listing in self.listings.items():
            if name != except_for:
                self.listings[name] = replace(listing, entry=directory_unreachable(listing.entry))

    def post(self, body: bytes, what: str) -> YpAnswer | None:
        """POST `body` to the directory; its answer, or None (one log line) if it could
        not be reached or did not answer within <yp-url-timeout>. A refusal is logged."""
        url, timeout = self.directory.yp_url, self.directory.yp_url_timeout
        try:
            server = yp_server(url)
            request = render_request(url, body, self.host.config.server_id)
            with gevent.Timeout(timeout, FetchError(f"no answer within {timeout} s")):
                sock = connect(server.host, server.port, tls=server.tls, timeout=None,
                               read_timeout=None)
                try:
                    head, _ = request_head(sock, request, deadline=None)
                finally:
                    sock.close()
        except (FetchError, ProtocolError) as exc:
            log.warning("YP: %s: %s failed: %s", url, what, exc)
            return None
        answer = parse_answer(head)
        if not answer.ok:
            log.warning("YP: %s refused the %s: %s", url, what, answer.message or "no reason given")
        return answer

    def remove_all(self) -> None:
        for name in list(self.listings):
            self.drop(name)
        self.send_due()

    def next_wake(self, now: float) -> float:
        due = min((listing.entry.due for listing in self.listings.values()), default=now + YP_CHECK)
        return max(0.0, min(YP_CHECK, due - now))
