"""Icecast-KH slave redirect on the wire (PROTOCOL.md §2.3, §2.7, §2.10). Pure.

A slave with `<master-redirect>` appends `registration_query` to every stream-list poll;
the master reads it back with `parse_registration` (only from an authenticated poll, the
caller's job) and later sends a listener it would refuse to one of those slaves with a
`302` to `redirect_location`. The Location follows §2.10 rather than KH's letter: a
lowercase `http` scheme (a 2.4.4 relay follows only that), path and userinfo
percent-encoded, the original query kept.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable
from urllib.parse import quote

from fanout.protocol.numbers import saturated_int

# A registration with a shorter poll interval is ignored, as KH does.
MIN_INTERVAL = 5


@dataclass(frozen=True, slots=True)
class Registration:
    host: str  # the slave's <hostname>, as it advertises it
    port: int
    interval: int  # seconds between its polls


def registration_query(hostname: str, port: int, interval: int) -> str:
    """What a slave appends to its poll path: KH's parameters, in KH's order."""
    return f"?rserver={quote(hostname, safe='.:-[]')}&rport={port}&interval={interval}"


def parse_registration(query: Iterable[tuple[str, str]]) -> Registration | None:
    """The slave's registration in a poll's query, or None if it is absent or invalid
    (no `rserver`, `rport` not in 1–65535, `interval` under MIN_INTERVAL)."""
    values = dict(reversed(list(query)))  # the first of repeated keys wins
    host = values.get("rserver", "")
    port, interval = _integer(values.get("rport")), _integer(values.get("interval"))
    if not host or port is None or not 0 < port < 65536 or interval is None:
        return None
    if interval < MIN_INTERVAL:
        return None
    return Registration(host, port, interval)


def redirect_location(host: str, port: int, path: str, raw_query: str,
                      credentials: tuple[str, str] | None = None) -> str:
    """`http://[user:pass@]host:port/path[?query]` for a listener sent to a slave.

    `raw_query` is the request's query as sent, without the `?`; `credentials` the
    listener's own Basic credentials, repeated so the slave can check them too.
    """
    userinfo = ""
    if credentials is not None:
        userinfo = f"{quote(credentials[0], safe='')}:{quote(credentials[1], safe='')}@"
    authority = f"[{host}]" if ":" in host and not host.startswith("[") else host
    location = f"http://{userinfo}{authority}:{port}{quote(path, safe='/')}"
    return f"{location}?{raw_query}" if raw_query else location


def _integer(text: str | None) -> int | None:
    """Plain ASCII digits (blanks around allowed) as an int, saturated; else None."""
    if text is None or not text.strip().isascii() or not text.strip().isdigit():
        return None  # isdigit() alone would pass "²", which int() refuses
    return saturated_int(text.strip())
