"""Icecast 2.4.4's statistics, as the admin XML and the public JSON show them (§6.3–6.5).

Sans-IO: callers pass what they measured (a `MountFigures` per mount, a `ServerFigures`)
and get ordered `{key: text}` dicts back; `stats_xml` and `status_json` render those.
Every value is text, as in Icecast's stats tree: the JSON renderer decides what looks
like a number, exactly as Icecast's xml2json stylesheet does. Values are wire text
(``fanout.protocol.text``); each renderer shows them with ``text.display``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from fanout.protocol.dates import iso_date, local_date
from fanout.protocol.text import url_path

Stats = dict[str, str]

# Per-mount keys left out of the public view (§6.4): hidden stats and per-client figures.
PRIVATE_MOUNT_KEYS = frozenset({"max_listeners", "public", "source_ip", "slow_listeners",
                                "total_bytes_read", "total_bytes_sent", "user_agent"})
# Global keys the public view keeps (everything else is a count of connections).
PUBLIC_GLOBAL_KEYS = ("admin", "host", "location", "server_id", "server_start",
                      "server_start_iso8601")
# What 2.4.4 shows for a source that did not say (source.c: source_update_settings).
UNSPECIFIED = {"genre": "various", "server_description": "Unspecified description",
               "server_name": "Unspecified name"}
# Source header -> stats key.
_HEADER_KEYS = {"ice-name": "server_name", "ice-description": "server_description",
                "ice-url": "server_url", "ice-genre": "genre", "ice-bitrate": "bitrate",
                "ice-audio-info": "audio_info", "icy-name": "server_name",
                "icy-description": "server_description", "icy-url": "server_url",
                "icy-genre": "genre", "icy-br": "bitrate", "icy-pub": "public",
                "ice-public": "public"}
# An ice-audio-info key becomes an XML element name: only plain names qualify, and short.
_AUDIO_INFO_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True, slots=True)
class MountSettings:
    """The `<mount>` settings that show in stats (None: the source decides)."""

    hidden: bool = False
    max_listeners: int = -1
    public: int = -1
    stream_name: str | None = None
    stream_description: str | None = None
    stream_url: str | None = None
    genre: str | None = None
    bitrate: str | None = None
    subtype: str | None = None


@dataclass(frozen=True, slots=True)
class RelayFigures:
    """A relayed mount's upstream side (issue: relays show in stats and metrics)."""

    upstream: str  # host:port/mount pulled from
    state: str  # "streaming", "retrying", "idle" (on-demand, nobody listening), …
    reconnects: int
    bytes_read: int


@dataclass(frozen=True, slots=True)
class MountFigures:
    """One mount as measured over every worker."""

    name: str
    content_type: str
    headers: Sequence[tuple[str, str]]
    source_ip: str
    user_agent: str
    title: str
    stream_start: float
    listeners: int
    listener_peak: int
    slow_listeners: int
    bytes_read: int
    bytes_sent: int
    settings: MountSettings = field(default_factory=MountSettings)
    relay: RelayFigures | None = None  # None: a source client feeds it
    artist: str = ""  # an Ogg link's ARTIST comment
    codec: Sequence[tuple[str, str]] = ()  # an Ogg link's subtype, audio_* (model.link_tags)


@dataclass(frozen=True, slots=True)
class ServerFigures:
    """The server-wide figures and identity."""

    admin: str
    host: str
    location: str
    server_id: str
    server_start: float
    port: int
    clients: int  # connected now, the request being answered not counted (as in 2.4.4)
    listeners: int
    sources: int
    # Running totals since start, with 2.4.4's meanings: every connection accepted; every
    # request but a source's; listeners served; sources and relay connections let in;
    # files served.
    connections: int
    client_connections: int = 0
    listener_connections: int = 0
    source_client_connections: int = 0
    source_relay_connections: int = 0
    file_connections: int = 0


def global_stats(server: ServerFigures) -> Stats:
    """The `<icestats>` children of /admin/stats, in Icecast's (alphabetical) order."""
    values = {
        "admin": server.admin, "client_connections": server.client_connections,
        "clients": server.clients, "connections": server.connections,
        "file_connections": server.file_connections, "host": server.host,
        "listener_connections": server.listener_connections,
        "listeners": server.listeners, "location": server.location,
        "server_id": server.server_id, "server_start": local_date(server.server_start),
        "server_start_iso8601": iso_date(server.server_start),
        "source_client_connections": server.source_client_connections,
        "source_relay_connections": server.source_relay_connections,
        "source_total_connections": (server.source_client_connections
                                     + server.source_relay_connections),
        # No STATS streams (the STATS method) are served: none now, none ever.
        "sources": server.sources, "stats": 0, "stats_connections": 0,
    }
    return {key: str(value) for key, value in values.items()}


def mount_stats(mount: MountFigures, host: str, port: int) -> Stats:
    """Every per-mount stat of §6.5 we know, sorted by key as Icecast's tree is."""
    values: dict[str, str] = dict(UNSPECIFIED)
    values.update(_header_stats(mount.headers))
    values.update(_settings_stats(mount.settings))
    values.update({
        "listener_peak": str(mount.listener_peak), "listeners": str(mount.listeners),
        "listenurl": f"http://{host}:{port}{url_path(mount.name)}",
        "max_listeners": _max_listeners(mount.settings.max_listeners),
        "server_type": mount.content_type, "slow_listeners": str(mount.slow_listeners),
        "source_ip": mount.source_ip, "stream_start": local_date(mount.stream_start),
        "stream_start_iso8601": iso_date(mount.stream_start),
        "total_bytes_read": str(mount.bytes_read), "total_bytes_sent": str(mount.bytes_sent),
    })
    if mount.user_agent:  # 2.4.4 files none for a source that sent no User-Agent
        values["user_agent"] = mount.user_agent
    values.update(mount.codec)  # after the settings: 2.4.4 files them once the link began
    values.setdefault("public", "0")
    if mount.title:
        values["title"] = mount.title
    if mount.artist:
        values["artist"] = mount.artist
    if mount.relay is not None:
        values.update(_relay_stats(mount.relay))
    return dict(sorted(values.items()))


def _relay_stats(relay: RelayFigures) -> Stats:
    return {"relay_upstream": relay.upstream, "relay_state": relay.state,
            "relay_reconnects": str(relay.reconnects), "relay_bytes_read": str(relay.bytes_read)}


def _header_stats(headers: Sequence[tuple[str, str]]) -> Stats:
    values: Stats = {}
    for name, value in headers:
        key = _HEADER_KEYS.get(name.lower())
        if key is None:
            continue
        values[key] = value
        if key == "audio_info":
            values.update(_audio_info_items(value))
    return values


def _audio_info_items(value: str) -> Stats:
    # 2.4.4 also files every `name=value` pair of ice-audio-info under its own name; a
    # name that could not be an XML element name is dropped (it would break /admin/stats).
    pairs = (item.partition("=") for item in value.split(";"))
    return {name.strip(): text for name, sep, text in pairs
            if sep and _AUDIO_INFO_KEY.fullmatch(name.strip())}


def _settings_stats(settings: MountSettings) -> Stats:
    configured = {"server_name": settings.stream_name,
                  "server_description": settings.stream_description,
                  "server_url": settings.stream_url, "genre": settings.genre,
                  "bitrate": settings.bitrate, "subtype": settings.subtype}
    values = {key: value for key, value in configured.items() if value is not None}
    if settings.public >= 0:
        values["public"] = str(settings.public)
    return values


def _max_listeners(limit: int) -> str:
    return "unlimited" if limit < 0 else str(limit)


def public_mount_stats(stats: Stats) -> Stats:
    """The keys of a mount's stats that /status-json.xsl shows (§6.4)."""
    return {k: v for k, v in stats.items()
            if k not in PRIVATE_MOUNT_KEYS and "connections" not in k
            and not k.startswith("relay_")}  # Icecast has no such keys; keep its JSON shape
