"""How fanout names itself: the one place for the rule.

- The ``Server`` header, the relay ``User-Agent`` and the ``server_id`` stat carry the
  configured ``<server-id>``. Its default should be ``default_server_id(version)``,
  "Icecast 2.4.4 (fanout 0.1.0)": a client or directory that looks for "Icecast" in it
  still finds it, and anyone reading it learns what really answers. An operator whose
  client compares the whole string sets ``<server-id>Icecast 2.4.4</server-id>``.
- Every page fanout draws (the status page, the admin UI) names the product with
  ``product_name(version)`` whatever ``<server-id>`` says: a page is read by people, and
  people are told the truth.

The version is passed in (the pure layer does not import the package root).
"""
from __future__ import annotations

PRODUCT = "fanout"
# What fanout is compatible with, on the wire: PROTOCOL.md's baseline.
COMPATIBLE_WITH = "Icecast 2.4.4"


def product_name(version: str) -> str:
    """"fanout 0.1.0" (just "fanout" when the version is unknown)."""
    return f"{PRODUCT} {version}" if version else PRODUCT


def default_server_id(version: str) -> str:
    """The ``<server-id>`` default: "Icecast 2.4.4 (fanout 0.1.0)"."""
    return f"{COMPATIBLE_WITH} ({product_name(version)})"
