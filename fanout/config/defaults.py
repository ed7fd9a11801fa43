"""The configuration ``python -m fanout`` runs with when given no file."""

from __future__ import annotations

from .model import Authentication, Config, Limits, ListenSocket

# 2.4.4's <clients> default of 256 is a 2004-era figure; an edge node built for many
# listeners starts at 1000 when nobody wrote a config. Everything else stays 2.4.4's.
BUILT_IN_CLIENT_LIMIT = 1000
BUILT_IN_ADMIN_USER = "admin"
ALL_ADDRESSES = "0.0.0.0"


def default_config(
    source_password: str, admin_password: str, relay_password: str, port: int = 8000
) -> Config:
    """Return the built-in config: one socket on ``0.0.0.0:port``, the given passwords."""
    return Config(
        listen_sockets=(ListenSocket(port=port, bind_address=ALL_ADDRESSES),),
        limits=Limits(clients=BUILT_IN_CLIENT_LIMIT),
        authentication=Authentication(
            source_password=source_password,
            admin_user=BUILT_IN_ADMIN_USER,
            admin_password=admin_password,
            relay_password=relay_password,  # relay_user stays 2.4.4's "relay"
        ),
        source="<built-in>",
    )
