"""``<paths><deny-ip>`` and ``<paths><allow-ip>`` files, matched as Icecast 2.4.4 does
(``src/connection.c``: ``recheck_ip_file``, ``accept_ip_address``).

A file is a list of addresses, one a line. A line is taken as it is, less its line end
(``\\n`` or ``\\r\\n``): an empty line and a line starting with ``#`` are skipped, and
nothing else is trimmed or interpreted. There are no wildcards, networks or ranges: an
address matches an entry only when the two strings are equal (2.4.4 keeps the entries in
a tree ordered by ``strcmp``). An IPv4 address reaching an IPv6 socket (``::ffff:a.b.c.d``)
is matched without its ``::ffff:`` prefix, as 2.4.4 writes it everywhere.

The deny list is checked first: a listed address is refused. Then, if there is an allow
list, an address not on it is refused, even when the list is empty (a file of comments
only allows no one). Without a file (none configured, or none read yet) nothing is
refused on its account.
"""
from __future__ import annotations

# How an IPv4 address looks on an IPv6 socket; 2.4.4 drops the prefix.
MAPPED_IPV4_PREFIX = "::ffff:"
COMMENT = "#"
# Why an address is refused, worded as 2.4.4's debug lines ("<address> is banned").
BANNED = "is banned"
NOT_ALLOWED = "is not allowed"


def parse_address_list(data: bytes) -> tuple[str, ...]:
    """The entries of an address file, in file order (duplicates kept: 2.4.4 counts them
    in its "N entries read" line). Bytes are taken one to one (latin-1): an entry that
    is not ASCII can never equal an address, as in 2.4.4."""
    entries = []
    for raw in data.split(b"\n"):
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if line and not line.startswith(COMMENT.encode()):
            entries.append(line.decode("latin-1"))
    return tuple(entries)


def plain_address(ip: str) -> str:
    """`ip` as 2.4.4 names it: an IPv4-mapped IPv6 address without its prefix."""
    return ip[len(MAPPED_IPV4_PREFIX):] if ip.startswith(MAPPED_IPV4_PREFIX) else ip


def refusal(ip: str, denied: frozenset[str] | None, allowed: frozenset[str] | None) -> str | None:
    """BANNED or NOT_ALLOWED when a connection from `ip` must be dropped, else None.
    `denied`/`allowed` are the lists read (None: no such list)."""
    address = plain_address(ip)
    if denied is not None and address in denied:
        return BANNED
    if allowed is not None and address not in allowed:
        return NOT_ALLOWED
    return None
