"""The real client address and scheme behind trusted proxies (issue 12 §5). Pure.

`<paths><x-forwarded-for>` (Icecast-KH's element, repeatable; Icecast 2.4.4 and 2.5 have
none) names the proxies whose `X-Forwarded-For` / `X-Forwarded-Proto` headers are
believed. KH takes shell patterns (`192.168.*`) matched against the peer's address text;
we take those, and CIDR blocks or single addresses (`10.0.0.0/8`, `::1`), which cannot
match by accident ("1*" matches 100.x and 1.x alike).

KH then believes the *leftmost* X-Forwarded-For entry, which the client itself wrote
and can forge. `client_address` instead walks the list right to left, as each proxy
appends the address it got the connection from: starting at the peer, while the
current hop is trusted, the next address to the left is the one it vouches for; the
first untrusted hop is the client. A request from an untrusted peer keeps its peer
address and its headers are ignored. An entry that is not an address stops the walk
at the trusted hop that wrote it.
"""
from __future__ import annotations

import fnmatch
import ipaddress
from dataclasses import dataclass
from typing import Iterable, Sequence

# Entries of X-Forwarded-For read at most (right to left): a longer chain is not a
# deployment, it is a header grown to make the walk expensive.
MAX_HOPS = 32
FORWARDED_FOR = "x-forwarded-for"
FORWARDED_PROTO = "x-forwarded-proto"
SCHEMES = ("http", "https")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    """The compiled `<x-forwarded-for>` list."""

    networks: tuple[Network, ...] = ()
    patterns: tuple[str, ...] = ()  # KH shell patterns, matched against the address text

    @classmethod
    def from_config(cls, entries: Iterable[str]) -> "TrustedProxies":
        """From the config's entries (already checked by the config converter)."""
        networks: list[Network] = []
        patterns: list[str] = []
        for entry in entries:
            network = parse_network(entry)
            if network is None:
                patterns.append(entry)
            else:
                networks.append(network)
        return cls(tuple(networks), tuple(patterns))

    def __bool__(self) -> bool:
        return bool(self.networks or self.patterns)

    def trusts(self, address: str) -> bool:
        parsed = parse_address(address)
        if parsed is None:
            return False
        if any(parsed in network for network in self.networks if network.version == parsed.version):
            return True
        return any(fnmatch.fnmatchcase(str(parsed), pattern) for pattern in self.patterns)


@dataclass(frozen=True, slots=True)
class ClientAddress:
    ip: str  # the address to log, limit and list the client by
    scheme: str  # "http" or "https", as the client reached the first trusted proxy
    forwarded: bool  # True when a trusted proxy's headers decided it


def parse_network(text: str) -> Network | None:
    """A CIDR block or single address, or None (then it may be a KH shell pattern)."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None


def parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as proxies write it (IPv4-mapped IPv6 taken as IPv4), or None."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_address(peer: str, headers: Sequence[tuple[str, str]], trusted: TrustedProxies,
                   scheme: str = "http") -> ClientAddress:
    """Who the request is from: `peer` (the connection's, or the PROXY header's, address)
    unless trusted proxies say otherwise (see the module doc). `headers`: (lower-case
    name, value) pairs, repeats kept; `scheme`: how the connection reached us."""
    if not trusted.trusts(peer):
        return ClientAddress(peer, scheme, False)
    hops = _forwarded_for(headers)
    client, depth = peer, 0
    for depth, entry in enumerate(reversed(hops), 1):
        address = parse_address(entry)
        if address is None:
            depth -= 1
            break  # a trusted hop wrote garbage: it is as far as we can see
        client = str(address)
        if not trusted.trusts(client):
            break
    if depth == 0:
        return ClientAddress(peer, _proto(headers, 0, 0) or scheme, False)
    return ClientAddress(client, _proto(headers, depth, len(hops)) or scheme, True)


def _forwarded_for(headers: Sequence[tuple[str, str]]) -> list[str]:
    """Every X-Forwarded-For entry in order (repeated headers join as one list), the
    last MAX_HOPS only."""
    entries = [entry for name, value in headers if name == FORWARDED_FOR
               for entry in value.split(",")]
    return entries[-MAX_HOPS:]


def _proto(headers: Sequence[tuple[str, str]], depth: int, hops: int) -> str | None:
    """The scheme X-Forwarded-Proto gives for the hop `depth` entries from the right: one
    value per hop if the lists match, else the nearest (rightmost) proxy's value."""
    values = [v.strip().lower() for name, value in headers if name == FORWARDED_PROTO
              for v in value.split(",")]
    if not values:
        return None
    value = values[hops - depth] if len(values) == hops and depth > 0 else values[-1]
    return value if value in SCHEMES else None


def proxy_header_allowed(peer: str, trusted: TrustedProxies) -> bool:
    """Whether a PROXY protocol header is believed from `peer`: from anyone who can reach
    a `<proxy-protocol>` port when no `<x-forwarded-for>` is configured (the port is the
    balancer's alone), else only from the trusted proxies."""
    return not trusted or trusted.trusts(peer)
