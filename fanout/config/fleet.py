"""Elements of the fleet features (issue 12): load-aware redirect, TLS, real client addresses.

Rows here are spliced into their sections' tables in ``tables.py`` (one line each), so the
features' elements read in one place:

* root: ``<redirect-mode>`` (when-full | always), ``<master-redirect-capacity>`` (the
  listeners a slave offers its master's redirects) and KH's ``<master-ssl-port>``;
  KH's ``<master>`` block: ``<ssl-port>``.
* ``<listen-socket>``: ``<ssl>`` (2.4.4) and ``<proxy-protocol>`` (ours).
* ``<limits>``: ``<connections-per-ip>`` (ours: DESIGN invariant 6; neither 2.4.4 nor KH
  bounds one address below ``<clients>``).
* ``<paths>``: ``<ssl-certificate>`` and ``<ssl-allowed-ciphers>`` (2.4.4),
  ``<ssl-private-key>`` and ``<x-forwarded-for>`` (KH), ``<ssl-upstream-cafile>`` and
  ``<ssl-upstream-verify>`` (ours: KH and 2.4.4 never verify an upstream's certificate,
  so there is no name to borrow).
"""
from __future__ import annotations

import ipaddress
import re

from .converters import COUNT, PORT_OR_OFF, BadValue, boolean, choice, integer, string
from .errors import ConfigError
from .model import Config
from .tagtable import element, text_reader, value

# A KH <x-forwarded-for> shell pattern: address characters and wildcards only.
_ADDRESS_PATTERN = re.compile(r"[0-9A-Fa-f.:*?\[\]-]+")


def trusted_proxy(text: str) -> str:
    """A CIDR block, a single address, or a KH shell pattern (``192.168.*``)."""
    try:
        ipaddress.ip_network(text, strict=False)
        return text
    except ValueError:
        pass
    if _ADDRESS_PATTERN.fullmatch(text) and any(c in text for c in "*?["):
        return text
    raise BadValue("a CIDR block (10.0.0.0/8), an address, or a pattern such as 192.168.*")


ROOT_TAGS = (
    value("redirect-mode", choice("when-full", "always")),
    value("master-redirect-capacity", COUNT),
    value("master-ssl-port", PORT_OR_OFF),  # KH
)

KH_MASTER_TAGS = (
    value("ssl-port", PORT_OR_OFF, field="master_ssl_port"),
)

LIMITS_TAGS = (
    value("connections-per-ip", integer(1)),
)

LISTEN_SOCKET_TAGS = (
    value("ssl", boolean),
    value("proxy-protocol", boolean),
)

PATHS_TAGS = (
    value("ssl-certificate", string),
    value("ssl-private-key", string),  # KH
    value("ssl-allowed-ciphers", string),
    element("x-forwarded-for", text_reader(trusted_proxy), repeat=True),  # KH
    value("ssl-upstream-cafile", string),
    value("ssl-upstream-verify", boolean),
)

def check_tls(config: Config) -> None:
    """A TLS port needs a certificate (2.4.4 would quietly serve it in plain HTTP)."""
    if any(socket.ssl for socket in config.listen_sockets) and config.paths.ssl_certificate is None:
        raise ConfigError("icecast/paths/ssl-certificate", None,
                          "a PEM certificate file, since a <listen-socket> has <ssl>1")
