"""The PROXY protocol, versions 1 and 2 (HAProxy's specification), read incrementally. Pure.

A load balancer in front of a `<listen-socket><proxy-protocol>1` port opens every
connection with one PROXY header saying whom it accepted the connection from; the HTTP
request follows. `ProxyHeaderParser.feed` takes bytes as they arrive and returns the
`ProxyHeader` once it is complete (None while more is needed); `leftover` then holds the
bytes after it (the start of the request). Anything else raises `ProtocolError` with
status CLOSE_SILENTLY: the peer is not a balancer speaking the protocol, or a broken
one, and gets no HTTP answer. Bounded: a v1 line is at most MAX_V1_LINE bytes (the
specification's own limit) and a v2 header at most V2_FIXED + MAX_V2_PAYLOAD, so a peer
cannot make the parser hold more.

v1 is a text line: `PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n`, or
`PROXY UNKNOWN[ anything]\r\n`. v2 is binary: the 12-byte signature, version and
command, family and transport, a big-endian length, then the addresses and TLVs (TLVs
are skipped). The client address is the header's source, except for a v2 LOCAL command
(the balancer's own health check), v1 UNKNOWN, and v2 families or transports without a
usable TCP address (UNSPEC, UNIX): there the connection's own peer stands (`client`).
"""
from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass

from fanout.protocol.errors import CLOSE_SILENTLY, ProtocolError

V1_PREFIX = b"PROXY "
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
# The longest v1 line, CRLF included (the specification's figure for TCP6).
MAX_V1_LINE = 107
# Bytes before a v2 header's variable part: signature, version/command, family, length.
V2_FIXED = 16
# The longest v2 variable part (addresses + TLVs) we take: real balancers send a few
# hundred bytes at most (AWS, GCP and Azure TLVs included); the field allows 65535.
MAX_V2_PAYLOAD = 4096

LOCAL, PROXY = "LOCAL", "PROXY"
# Address families, v1 and v2 alike.
IPV4, IPV6, UNIX, UNSPEC = "IPv4", "IPv6", "UNIX", "UNSPEC"

_V2_COMMANDS = {0x0: LOCAL, 0x1: PROXY}
_V2_FAMILIES = {0x0: UNSPEC, 0x1: IPV4, 0x2: IPV6, 0x3: UNIX}
_V2_STREAM, _V2_DGRAM = 0x1, 0x2
_V2_ADDRESS_SIZE = {IPV4: 12, IPV6: 36, UNIX: 216}
_V1_FAMILIES = {b"TCP4": IPV4, b"TCP6": IPV6}
_PORT = re.compile(rb"0|[1-9][0-9]{0,4}")


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    version: int  # 1 or 2
    command: str  # PROXY, or LOCAL (v2: a connection of the balancer's own)
    family: str  # IPV4, IPV6, UNIX or UNSPEC (v1 UNKNOWN)
    source: tuple[str, int] | None  # the client as the balancer saw it; None: use the peer
    destination: tuple[str, int] | None

    def client(self, peer: tuple[str, int]) -> tuple[str, int]:
        """The address to log, limit and list this connection by."""
        return self.source if self.source is not None else peer


def refuse(message: str) -> ProtocolError:
    return ProtocolError(f"bad PROXY header: {message}", CLOSE_SILENTLY)


class ProxyHeaderParser:
    """Feed bytes until a `ProxyHeader` comes back; then read `leftover`."""

    def __init__(self) -> None:
        self.leftover = b""
        self._buffer = b""

    def feed(self, data: bytes) -> ProxyHeader | None:
        """The header once complete, else None; raises ProtocolError (see the module)."""
        self._buffer += data
        buffer = self._buffer
        if buffer.startswith(V1_PREFIX):
            return self._v1(buffer)
        if buffer.startswith(V2_SIGNATURE):
            return self._v2(buffer)
        if V1_PREFIX.startswith(buffer[:len(V1_PREFIX)]) or V2_SIGNATURE.startswith(buffer[:12]):
            return None  # still a prefix of one of them
        raise refuse("the connection does not start with one")

    def _v1(self, buffer: bytes) -> ProxyHeader | None:
        end = buffer.find(b"\n", 0, MAX_V1_LINE)
        if end < 0:
            if len(buffer) >= MAX_V1_LINE:
                raise refuse(f"v1 line longer than {MAX_V1_LINE} bytes")
            return None
        if buffer[end - 1:end] != b"\r":
            raise refuse("v1 line not ended by CRLF")
        self.leftover = buffer[end + 1:]
        return parse_v1(buffer[:end - 1])

    def _v2(self, buffer: bytes) -> ProxyHeader | None:
        if len(buffer) < V2_FIXED:
            return None
        length = struct.unpack_from("!H", buffer, 14)[0]
        if length > MAX_V2_PAYLOAD:
            raise refuse(f"v2 header of {length} bytes (at most {MAX_V2_PAYLOAD} taken)")
        if len(buffer) < V2_FIXED + length:
            return None
        self.leftover = buffer[V2_FIXED + length:]
        return parse_v2(buffer[12], buffer[13], buffer[V2_FIXED:V2_FIXED + length])


def parse_v1(line: bytes) -> ProxyHeader:
    """A v1 line without its CRLF."""
    parts = line.split(b" ")
    if len(parts) >= 2 and parts[1] == b"UNKNOWN":
        return ProxyHeader(1, PROXY, UNSPEC, None, None)  # the rest is to be ignored
    family = _V1_FAMILIES.get(parts[1]) if len(parts) == 6 else None
    if family is None:
        raise refuse("v1 line is not PROXY TCP4|TCP6 <src> <dst> <sport> <dport>")
    source = _address(family, parts[2]), _port(parts[4])
    destination = _address(family, parts[3]), _port(parts[5])
    return ProxyHeader(1, PROXY, family, source, destination)


def _address(family: str, text: bytes) -> str:
    try:
        address = text.decode("ascii")
        if "%" in address:
            raise ValueError("scoped")  # a zone id means nothing to a peer's address
        parsed = ipaddress.IPv4Address(address) if family == IPV4 else ipaddress.IPv6Address(address)
    except ValueError:
        raise refuse(f"not an {family} address: {text[:45]!r}") from None
    return str(parsed)


def _port(text: bytes) -> int:
    if not _PORT.fullmatch(text) or int(text) > 65535:
        raise refuse(f"not a port: {text[:8]!r}")
    return int(text)


def parse_v2(version_command: int, family_transport: int, payload: bytes) -> ProxyHeader:
    """A v2 header from its 13th and 14th bytes and its variable part."""
    command = _V2_COMMANDS.get(version_command & 0x0F)
    if version_command >> 4 != 2 or command is None:
        raise refuse(f"v2 version/command byte {version_command:#04x}")
    family = _V2_FAMILIES.get(family_transport >> 4)
    transport = family_transport & 0x0F
    if family is None or transport > _V2_DGRAM:
        raise refuse(f"v2 family/transport byte {family_transport:#04x}")
    if command == LOCAL:
        return ProxyHeader(2, LOCAL, family, None, None)  # addresses are to be ignored
    if transport == _V2_DGRAM:
        raise refuse("v2 header for a datagram connection")
    if len(payload) < _V2_ADDRESS_SIZE.get(family, 0):
        raise refuse(f"v2 {family} addresses cut short ({len(payload)} bytes)")
    if family in (IPV4, IPV6) and transport == _V2_STREAM:
        source, destination = _v2_addresses(family, payload)
        return ProxyHeader(2, PROXY, family, source, destination)
    return ProxyHeader(2, PROXY, family, None, None)  # UNIX, UNSPEC: no TCP address


def _v2_addresses(family: str, payload: bytes) -> tuple[tuple[str, int], tuple[str, int]]:
    size = 4 if family == IPV4 else 16
    source = ipaddress.ip_address(payload[:size])
    destination = ipaddress.ip_address(payload[size:2 * size])
    source_port, destination_port = struct.unpack_from("!HH", payload, 2 * size)
    return (str(source), source_port), (str(destination), destination_port)
