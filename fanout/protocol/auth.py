"""HTTP Basic credentials: the one codec (read from a request, written for a request we
send) and constant-time comparison.

Both ways a credential is its exact wire bytes (``TEXT_ENCODING`` with ``TEXT_ERRORS``):
what a client sent is compared byte for byte, and what we send an upstream or an auth
server is the configured text's bytes, as Icecast sends the bytes of its config.

Which user/password pair a request must match (source, admin, relay; PROTOCOL.md §4.2,
§6.1) is decided by the caller; this module only reads and compares. The deprecated
``ice-password`` header and the ``pass`` query parameter of ICY admin requests are
plain values the caller reads with ``Request.header`` / ``Request.query_value``.
"""

from __future__ import annotations

import binascii
import hmac
from base64 import b64decode, b64encode
from dataclasses import dataclass

from fanout.protocol.http import TEXT_ENCODING, TEXT_ERRORS, Request


@dataclass(frozen=True, slots=True)
class Credentials:
    user: str
    password: str

    def __repr__(self) -> str:  # keep passwords out of logs and tracebacks
        return f"Credentials(user={self.user!r}, password='***')"


def basic_credentials(request: Request) -> Credentials | None:
    """Return the credentials of the request's ``Authorization: Basic`` header.

    Returns None when the header is missing, uses another scheme, is not valid base64 or
    has no colon. The password is everything after the first colon (it may contain more).
    """
    scheme, _, token = (request.header("authorization") or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.decode(TEXT_ENCODING, TEXT_ERRORS).partition(":")
    if not colon:
        return None
    return Credentials(user, password)


def basic_authorization(user: str, password: str) -> str:
    """The ``Authorization`` header value that sends ``user``/``password`` (Basic)."""
    token = b64encode(_wire_bytes(f"{user}:{password}")).decode("ascii")
    return f"Basic {token}"


def credentials_match(given: Credentials | None, user: str, password: str | None) -> bool:
    """Return True if ``given`` is exactly ``user``/``password``.

    Both fields are always compared in constant time, so the timing does not tell which
    one was wrong. False when nothing was given or no password is configured (None).
    """
    if given is None or password is None:
        return False
    user_ok = hmac.compare_digest(_wire_bytes(given.user), _wire_bytes(user))
    password_ok = hmac.compare_digest(_wire_bytes(given.password), _wire_bytes(password))
    return user_ok and password_ok


def _wire_bytes(text: str) -> bytes:
    return text.encode(TEXT_ENCODING, TEXT_ERRORS)
