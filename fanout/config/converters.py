"""Strict text → value converters for configuration elements.

Icecast reads numbers with ``atoi`` (``"abc"`` silently becomes 0) and booleans as numbers.
We refuse anything ambiguous instead: a converter either returns a value or raises
``BadValue`` saying what it expected; the tag-table reader adds the XML path and the
text, turning that into a ``ConfigError``. Converters see text already stripped of the
whitespace around it.
"""

from __future__ import annotations

import re
from typing import Callable, TypeVar
from urllib.parse import urlsplit

from fanout.protocol.mount_name import MAX_MOUNT_BYTES, mount_name_bytes

T = TypeVar("T")
Converter = Callable[[str], T]

_INTEGER = re.compile(r"[+-]?[0-9]+")
_TRUE = frozenset({"1", "true", "yes"})
_FALSE = frozenset({"0", "false", "no"})
# RFC 9110 token: what an HTTP header name may contain.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Control characters other than tab would let a configured value split an HTTP head.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class BadValue(ValueError):
    """Raised by a converter; ``expected`` completes "expected …" in the error message."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


def integer(low: int | None = None, high: int | None = None) -> Converter[int]:
    """Return a converter for a decimal integer within ``low``..``high`` (inclusive)."""
    expected = _describe_range(low, high)

    def convert(text: str) -> int:
        if not _INTEGER.fullmatch(text):
            raise BadValue(expected)
        try:
            number = int(text)
        except ValueError:  # over 4300 digits, which int() refuses: outside any range anyway
            raise BadValue(expected) from None
        if (low is not None and number < low) or (high is not None and number > high):
            raise BadValue(expected)
        return number

    return convert


def _describe_range(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f"an integer from {low} to {high}"
    if low is not None:
        return f"an integer >= {low}"
    return "an integer"


def boolean(text: str) -> bool:
    """``0/1``, ``true/false``, ``yes/no``, any case (2.4.4 itself only knows 0 and 1)."""
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise BadValue("a boolean: 0, 1, true, false, yes or no")


def string(text: str) -> str:
    """Any non-empty text: an empty element is a mistake, never a meaningful value."""
    if not text:
        raise BadValue("a non-empty string")
    if _CONTROL.search(text):
        raise BadValue("text without control characters")
    return text


def mount_name(text: str) -> str:
    """A mount name (or mount glob, or webroot file path): it must start with ``/``."""
    if not text.startswith("/") or _CONTROL.search(text):
        raise BadValue("a mount name starting with '/'")
    if mount_name_bytes(text) > MAX_MOUNT_BYTES:  # every claim of it would be refused
        raise BadValue(f"a mount name of at most {MAX_MOUNT_BYTES} bytes")
    return text


def public_flag(text: str) -> int:
    """``<public>``: -1 leaves the choice to the source, otherwise a boolean as 0/1."""
    if text == "-1":
        return -1
    try:
        return int(boolean(text))
    except BadValue:
        expected = "-1 (the source decides) or a boolean: 0, 1, true, false, yes or no"
        raise BadValue(expected) from None


def no_yp_flag(text: str) -> int:
    """Legacy ``<no-yp>``: 1 means ``<public>0</public>``; 0 leaves the source to decide."""
    return 0 if boolean(text) else -1


def header_name(text: str) -> str:
    """An HTTP header name (an RFC 9110 token)."""
    if not _HEADER_NAME.fullmatch(text):
        raise BadValue("an HTTP header name (letters, digits and !#$%&'*+.^_`|~-)")
    return text


def header_value(text: str) -> str:
    """An HTTP header value: may be empty, may not contain line breaks."""
    if _CONTROL.search(text):
        raise BadValue("a header value without line breaks or control characters")
    return text


def header_names(text: str) -> tuple[str, ...]:
    """A comma-separated list of HTTP header names (blanks around each are dropped)."""
    names = tuple(name.strip() for name in text.split(","))
    if not all(_HEADER_NAME.fullmatch(name) for name in names):
        raise BadValue("HTTP header names separated by commas")
    return names


def http_url(text: str) -> str:
    """An ``http://`` or ``https://`` URL with a host (and a valid port, if one is given)."""
    expected = "an http:// or https:// URL with a host"
    if _CONTROL.search(text) or " " in text:
        raise BadValue(expected)
    try:
        parts = urlsplit(text)  # raises ValueError for an unclosed "[" IPv6 host
        parts.port  # raises ValueError for a port that is not a number in range
    except ValueError:
        raise BadValue(expected) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadValue(expected)
    return text


def choice(*options: str) -> Converter[str]:
    """Return a converter accepting exactly one of ``options`` (case-insensitive)."""
    expected = "one of " + ", ".join(repr(option) for option in options)

    def convert(text: str) -> str:
        lowered = text.lower()
        if lowered not in options:
            raise BadValue(expected)
        return lowered

    return convert


# The ranges used by the tag tables, named once.
PORT = integer(1, 65535)
PORT_OR_OFF = integer(0, 65535)  # <master-server-port>: 0 switches master polling off
LISTEN_PORT = integer(0, 65535)  # <listen-socket><port>: 0 lets the kernel pick (printed at start)
COUNT = integer(0)
SECONDS = integer(0)
POSITIVE_SECONDS = integer(1)
BYTES = integer(0)
LISTENER_LIMIT = integer(-1)  # -1 = unlimited
INHERIT_OR_BYTES = integer(-1)  # mount burst-size / mp3-metadata-interval: -1 = inherit
LOG_LEVEL = integer(1, 4)  # 1 error, 2 warn, 3 info, 4 debug
HTTP_STATUS = integer(100, 599)
