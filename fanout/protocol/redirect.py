"""Icecast-KH slave redirect on the wire (PROTOCOL.md §2.3, §2.7, §2.10). Pure.

A slave with `<master-redirect>` appends `registration_query` to every stream-list poll;
the master reads it back with `parse_registration` (only from an authenticated poll, the
caller's job) and later sends a listener it would refuse to one of those slaves with a
`302` to `redirect_location`. The Location follows §2.10 rather than KH's letter: a
lowercase `http` scheme (a 2.4.4 relay follows only that), path and userinfo
percent-encoded, the original query kept.

fanout's extension (issue 12). A fanout slave also reports its load in the same query,
as parameters a KH or 2.4.4 master ignores (both look up `rserver`, `rport`, `interval`
by name and nothing else; 2.4.4 reads no registration at all):
`&fanout-listeners=N&fanout-capacity=C&fanout-health=ok[&fanout-refresh=S]`, the number
of mounts it serves (`&fanout-mount-count=M`) and one `&fanout-mount=<mount>:<listeners>`
per mount (the largest first, bounded so the whole request head stays well inside the
4 KiB an Icecast master reads): a master sends a listener only to a slave whose complete
list names the mount (a cut list, or none, says nothing against it). A fanout master that
got a load answers with `X-Fanout-Refresh: S`; the slave then re-registers every S
seconds (the fast schedule) and says so with `fanout-refresh`, which lets the master
expire it within a few S of its last registration instead of KH's interval + 10 s.
The master marks each Location with `fanout-redirected=1`, so a listener sent on is
served or refused where it lands, never redirected again (no loop).

A fanout slave with a TLS listen socket also says `&fanout-tls-port=P` (right after KH's
parameters, so a cut load report never drops it): a listener that reached the master over
https (a TLS port, or a trusted proxy's `X-Forwarded-Proto: https`) is sent to
`https://host:P/...`. Such a listener goes only to a slave that said one: it is never
downgraded to http behind its back (the caller then answers as when no slave is usable).
A value that is not a port is ignored (the slave counts as one without a TLS port) and
kept, cut to MAX_SHOWN_TLS_PORT characters, for one log line.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence
from urllib.parse import quote

from fanout.protocol.numbers import saturated_int

# A registration with a shorter poll interval is ignored, as KH does.
MIN_INTERVAL = 5

# -- fanout's load report (see the module doc) ---------------------------------------------
LISTENERS_KEY = "fanout-listeners"
CAPACITY_KEY = "fanout-capacity"
HEALTH_KEY = "fanout-health"
REFRESH_KEY = "fanout-refresh"
MOUNT_KEY = "fanout-mount"  # repeated, one per mount: "<mount>:<listeners>"
MOUNT_COUNT_KEY = "fanout-mount-count"  # how many mounts it serves (its list may be cut)
TLS_PORT_KEY = "fanout-tls-port"  # the slave's https port, if it has one
# Characters of a bad fanout-tls-port kept for the master's log line: enough to recognise
# it, never a slave's whole query in the log.
MAX_SHOWN_TLS_PORT = 16
HEALTHY = "ok"  # any other health (a slave says "draining" while it stops) takes no listener
DRAINING = "draining"
# The master's answer header that asks a reporting slave to re-register every S seconds.
REFRESH_HEADER = "X-Fanout-Refresh"
# Seconds between a fanout slave's registrations on the fast schedule: the master expires
# it after MISSED_REFRESHES of them, so a vanished slave is out within 1.5 s (issue: 2 s).
FAST_REFRESH = 0.5
# Refresh periods outside these bounds (seconds) are refused: faster would be a poll
# flood, slower is what the KH interval already does.
MIN_REFRESH = 0.1
MAX_REFRESH = 60.0
# The registration query's length in bytes at most: Icecast masters read a request head
# into 4 KiB (2.4.4 and KH), which the path, Authorization, Host and User-Agent share.
MAX_REGISTRATION_QUERY = 2048
# Mounts reported per registration at most (also the most the master reads).
MAX_REPORTED_MOUNTS = 64
# The query parameter a master adds to a Location; a request carrying it is never
# redirected again.
REDIRECT_MARKER = "fanout-redirected"

# The Location's scheme for a listener that came over plain http or over https.
HTTP, HTTPS = "http", "https"

# <redirect-mode>: KH's redirect of would-be refusals only, or every listener (a director).
WHEN_FULL = "when-full"
ALWAYS = "always"

_REFRESH = re.compile(r"[0-9]{1,4}(\.[0-9]{1,3})?")


@dataclass(frozen=True, slots=True)
class SlaveLoad:
    """What a fanout slave reports of itself on each registration."""

    listeners: int  # its listeners now, relay pulls not counted
    capacity: int  # listeners it offers: <master-redirect-capacity>, else <limits><clients>
    healthy: bool  # False: it is stopping (or said something else): send nobody there
    refresh: float | None = None  # seconds between its registrations; None: KH's interval
    mounts: tuple[tuple[str, int], ...] = ()  # (mount, listeners), largest first, bounded
    mount_count: int | None = None  # mounts it serves; None: not said (the list may be cut)

    def carries(self, mount: str) -> bool:
        """Whether it may serve `mount`: unless its list is complete and lacks it."""
        if self.mount_count is None or len(self.mounts) < self.mount_count:
            return True
        return any(name == mount for name, _ in self.mounts)


@dataclass(frozen=True, slots=True)
class Registration:
    host: str  # the slave's <hostname>, as it advertises it
    port: int
    interval: int  # seconds between its polls
    load: SlaveLoad | None = None  # None: a KH or older slave, which reports no load
    tls_port: int = 0  # its https port (fanout-tls-port); 0: it has none (or said garbage)
    bad_tls_port: str = ""  # a fanout-tls-port that is not a port, as given (cut); "": none


def registration_query(hostname: str, port: int, interval: int,
                       load: SlaveLoad | None = None, tls_port: int = 0) -> str:
    """What a slave appends to its poll path: KH's parameters, in KH's order, then its
    https port (if `tls_port` > 0) and the load report (if any), at most
    MAX_REGISTRATION_QUERY bytes in all."""
    query = f"?rserver={quote(hostname, safe='.:-[]')}&rport={port}&interval={interval}"
    if tls_port > 0:
        query += f"&{TLS_PORT_KEY}={tls_port}"
    return query if load is None else query + _load_query(load, MAX_REGISTRATION_QUERY - len(query))


def _load_query(load: SlaveLoad, room: int) -> str:
    text = (f"&{LISTENERS_KEY}={load.listeners}&{CAPACITY_KEY}={load.capacity}"
            f"&{HEALTH_KEY}={HEALTHY if load.healthy else DRAINING}")
    if load.refresh is not None:
        text += f"&{REFRESH_KEY}={load.refresh:g}"
    if load.mount_count is not None:
        text += f"&{MOUNT_COUNT_KEY}={load.mount_count}"
    ranked = sorted(load.mounts, key=lambda item: (-item[1], item[0]))[:MAX_REPORTED_MOUNTS]
    for mount, count in ranked:
        piece = f"&{MOUNT_KEY}={quote(mount, safe='/')}:{count}"
        if len(text) + len(piece) > room:
            break  # the totals stay exact; only per-mount detail is cut
        text += piece
    return text


def parse_registration(query: Iterable[tuple[str, str]]) -> Registration | None:
    """The slave's registration in a poll's query, or None if it is absent or invalid
    (no `rserver`, `rport` not in 1–65535, `interval` under MIN_INTERVAL). A load report
    that does not parse leaves `load` None, a `fanout-tls-port` that is not a port leaves
    `tls_port` 0 (and says what it was in `bad_tls_port`); parameters nobody knows are
    ignored."""
    pairs = list(query)
    values = dict(reversed(pairs))  # the first of repeated keys wins
    host = values.get("rserver", "")
    port, interval = _integer(values.get("rport")), _integer(values.get("interval"))
    if not host or port is None or not 0 < port < 65536 or interval is None:
        return None
    if interval < MIN_INTERVAL:
        return None
    tls_port, bad_tls_port = parse_tls_port(values.get(TLS_PORT_KEY))
    return Registration(host, port, interval, parse_load(pairs), tls_port, bad_tls_port)


def parse_tls_port(text: str | None) -> tuple[int, str]:
    """A registration's `fanout-tls-port`: (port, "") if it is one (1–65535), (0, "") if
    absent, else (0, the text cut to MAX_SHOWN_TLS_PORT characters) for the log."""
    if text is None:
        return 0, ""
    port = _integer(text)
    if port is None or not 0 < port < 65536:
        return 0, text[:MAX_SHOWN_TLS_PORT]
    return port, ""


def parse_load(query: Sequence[tuple[str, str]]) -> SlaveLoad | None:
    """The load report in a registration query, or None if there is none or it is bad
    (the registration then counts as a KH slave's: load unknown)."""
    values = dict(reversed(query))
    listeners = _integer(values.get(LISTENERS_KEY))
    capacity = _integer(values.get(CAPACITY_KEY))
    if listeners is None or capacity is None:
        return None
    refresh = parse_refresh(values.get(REFRESH_KEY))
    if REFRESH_KEY in values and refresh is None:
        return None  # a schedule we cannot hold it to: trust none of the report
    return SlaveLoad(listeners, capacity, values.get(HEALTH_KEY) == HEALTHY, refresh,
                     _mounts(query), _integer(values.get(MOUNT_COUNT_KEY)))


def _mounts(query: Sequence[tuple[str, str]]) -> tuple[tuple[str, int], ...]:
    seen: dict[str, int] = {}
    for key, value in query:
        if key != MOUNT_KEY or len(seen) >= MAX_REPORTED_MOUNTS:
            continue
        mount, _, count_text = value.rpartition(":")  # a mount may hold ":", the count not
        count = _integer(count_text)
        if mount.startswith("/") and count is not None:
            seen.setdefault(mount, count)
    return tuple(seen.items())


def parse_refresh(text: str | None) -> float | None:
    """A refresh period in seconds (decimal, within MIN_REFRESH..MAX_REFRESH), else None."""
    if text is None or not _REFRESH.fullmatch(text.strip()):
        return None
    period = float(text)
    return period if MIN_REFRESH <= period <= MAX_REFRESH else None


def refresh_header(period: float = FAST_REFRESH) -> tuple[str, str]:
    """The header a master adds to its answer to a load-reporting poll."""
    return REFRESH_HEADER, f"{period:g}"


def advertised_capacity(configured: int, clients_limit: int) -> int:
    """The capacity a slave reports: <master-redirect-capacity> if set (> 0), else its
    <limits><clients>, the most connections it takes at all."""
    return configured if configured > 0 else clients_limit


def redirect_location(host: str, port: int, path: str, raw_query: str,
                      credentials: tuple[str, str] | None = None, scheme: str = HTTP) -> str:
    """`http://[user:pass@]host:port/path[?query]` for a listener sent to a slave
    (`https://` with `scheme` HTTPS, `port` then the slave's TLS port).

    `raw_query` is the request's query as sent, without the `?` (pass it through
    `marked_query` to stop the listener being redirected again); `credentials` the
    listener's own Basic credentials, repeated so the slave can check them too. Raises
    ValueError for a scheme other than HTTP or HTTPS.
    """
    if scheme not in (HTTP, HTTPS):
        raise ValueError(f"not a redirect scheme: {scheme!r}")
    userinfo = ""
    if credentials is not None:
        userinfo = f"{quote(credentials[0], safe='')}:{quote(credentials[1], safe='')}@"
    authority = f"[{host}]" if ":" in host and not host.startswith("[") else host
    location = f"{scheme}://{userinfo}{authority}:{port}{quote(path, safe='/')}"
    return f"{location}?{raw_query}" if raw_query else location


def marked_query(raw_query: str) -> str:
    """`raw_query` (without `?`) with the redirect marker added, unless it has one."""
    if is_redirected(_raw_pairs(raw_query)):
        return raw_query
    marker = f"{REDIRECT_MARKER}=1"
    return f"{raw_query}&{marker}" if raw_query else marker


def is_redirected(query: Iterable[tuple[str, str]]) -> bool:
    """Whether a request's (decoded) query carries the redirect marker: it came from a
    master's 302, and must be served or refused here, not sent on."""
    return any(key == REDIRECT_MARKER for key, _ in query)


def redirect_wanted(mode: str, *, refused: bool, relay: bool, redirected: bool) -> bool:
    """Whether a listener request gets a 302 to a slave (if one is usable) instead of
    being served or refused here. Relay pulls and already redirected listeners never
    are; otherwise KH's `when-full` redirects would-be refusals, `always` everyone."""
    if relay or redirected:
        return False
    return refused or mode == ALWAYS


def _raw_pairs(raw_query: str) -> list[tuple[str, str]]:
    pairs = (item.partition("=") for item in raw_query.split("&") if item)
    return [(key, value) for key, _, value in pairs]


def _integer(text: str | None) -> int | None:
    """Plain ASCII digits (blanks around allowed) as an int, saturated; else None."""
    if text is None or not text.strip().isascii() or not text.strip().isdigit():
        return None  # isdigit() alone would pass "²", which int() refuses
    return saturated_int(text.strip())
