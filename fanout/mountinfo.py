"""What everyone needs to know about a mount's stream: `MountInfo`. Pure.

Theory of operation: whoever feeds a mount (a source client's worker, a relay pull)
describes its stream with `stream_info`, the one place a MountInfo is made; the
supervisor's registry stamps `stream_start` when the mount is claimed and sends the info
with `mount_up`; every change (a new title, a relay reconnecting) is a new MountInfo
made from the old one with `dataclasses.replace` (or `with_relay`, `renewed`) and sent
with `mount_info`. Workers never change it: they read it to build listener heads, stats
and the decision whether a listener may be served now.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from fanout.lifecycle import RelayState
from fanout.model.ingest import format_for_content_type

# Content type Icecast assumes for a source or an upstream that declares none.
DEFAULT_CONTENT_TYPE = "audio/mpeg"

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class RelayInfo:
    """The upstream side of a relayed mount, kept current by its pull."""

    upstream: str  # http://host:port/path streaming or tried last
    state: RelayState
    reconnects: int = 0
    bytes_read: int = 0  # bytes read from the upstream, updated every few seconds
    on_demand: bool = False
    # False: an on-demand relay with no upstream connection; workers hold a newcomer's
    # head until it turns True.
    connected: bool = True


@dataclass(frozen=True, slots=True)
class MountInfo:
    content_type: str
    format: str  # the ingest format (fanout.model.ingest): fixed for the ring's lifetime
    headers: Headers  # the source's or upstream's ice-* / icy-* headers, passed on
    source_ip: str  # the source client's address, or the upstream's host
    user_agent: str = ""
    title: str = ""  # the current title, as stats show it
    artist: str = ""  # an Ogg link's ARTIST comment (fanout.model.link_tags), as stats show it
    codec: tuple[tuple[str, str], ...] = ()  # an Ogg link's codec stats: subtype, audio_* …
    stream_start: float = 0.0  # epoch seconds the mount was claimed (set by the registry)
    icy_metaint: int = 0  # the upstream's ICY interval (0: none), reused for our listeners
    shoutcast_compat: bool = False  # fed by a Shoutcast source: /admin.cgi may set its title
    relay: RelayInfo | None = None  # None: a source client feeds it

    @property
    def on_demand(self) -> bool:
        return self.relay is not None and self.relay.on_demand

    @property
    def connected(self) -> bool:
        """False while an on-demand relay has no upstream connection."""
        return self.relay is None or self.relay.connected

    @property
    def held(self) -> bool:
        """Its relay is reconnecting: listeners are held, newcomers are not served."""
        return self.relay is not None and self.relay.state is RelayState.RECONNECTING


def stream_info(content_type: str | None, source_ip: str, *,
                headers: Sequence[tuple[str, str]] = (), user_agent: str = "",
                icy_metaint: int = 0, shoutcast_compat: bool = False,
                relay: RelayInfo | None = None, format: str | None = None) -> MountInfo:
    """A new stream's info. `content_type` None means DEFAULT_CONTENT_TYPE; `format` is by
    default the ingest format of that content type."""
    declared = content_type or DEFAULT_CONTENT_TYPE
    return MountInfo(declared, format_for_content_type(declared) if format is None else format,
                     tuple(headers), source_ip, user_agent=user_agent,
                     icy_metaint=icy_metaint, shoutcast_compat=shoutcast_compat, relay=relay)


def with_relay(info: MountInfo, *, state: RelayState | None = None,
               reconnects: int | None = None, bytes_read: int | None = None,
               connected: bool | None = None) -> MountInfo:
    """`info` (a relayed mount's) with the given RelayInfo fields changed."""
    relay = info.relay
    assert relay is not None, "only a relayed mount has relay fields"
    return replace(info, relay=RelayInfo(
        relay.upstream, relay.state if state is None else state,
        relay.reconnects if reconnects is None else reconnects,
        relay.bytes_read if bytes_read is None else bytes_read, relay.on_demand,
        relay.connected if connected is None else connected))


def renewed(old: MountInfo, new: MountInfo) -> MountInfo:
    """`new` (a reconnected or switched upstream's stream) for the same mount: the mount's
    start stays `old`'s."""
    return replace(new, stream_start=old.stream_start)
