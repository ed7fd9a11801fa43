"""Text from the wire, and how each kind of output shows it: the one place for the rule.

Theory of operation
-------------------
Bytes a peer sends as text (request targets, header values, query values, mount names)
are held as a ``str`` decoded as UTF-8 with ``surrogateescape`` (``from_wire``): valid
UTF-8 (what ffmpeg, butt and liquidsoap send) reads naturally, and every byte that is not
part of valid UTF-8 becomes one lone surrogate U+DC80..U+DCFF. Nothing is lost, so
``to_wire`` gives the exact bytes back. Such a ``str`` is *wire text*.

Every output is one of three kinds, each with one function:

- **byte formats**, where a value is an *identity* that a peer sends back to us or
  compares: listener response heads, ICY blocks, ``/admin/streamlist.txt``, KH's
  ``/admin/streams``, relay requests. ``to_wire``: byte-exact, like Icecast's byte copy,
  so a slave relaying ``/%ff%fd.mp3`` asks for exactly the bytes its master knows.
- **display formats**, read by people or parsers that demand valid Unicode: HTML, XML,
  JSON, Prometheus. ``display``: a value that is not valid UTF-8 is read as Latin-1 as a
  whole (what players assume for ICY text, and what legacy encoders send), and control
  characters, which XML 1.0 cannot carry at all, become U+FFFD. The result encodes as
  strict UTF-8 in every one of them. A URL inside a display format is ``url_path``:
  percent-encoded so that following it requests the identity bytes again.
- **log lines** (error.log, stderr, access.log): ``log_safe``. A log is a record of what
  arrived, so a byte that is not valid UTF-8 is written as ``\\xNN`` (unambiguous, as
  Apache writes access logs) and every control or line-separator character is escaped:
  nothing a peer sends can end a log line or forge the next one.

Titles arrive as bytes (``/admin/metadata``, ``admin.cgi``, upstream ICY blocks) and are
shown with ``decode_title``: the mount's ``<charset>`` when one other than Icecast's
Latin-1 default is configured and the bytes fit it, else the same UTF-8-else-Latin-1 rule.
"""
from __future__ import annotations

import codecs
import re

WIRE_ENCODING = "utf-8"
WIRE_ERRORS = "surrogateescape"
# Codecs Python knows that are no charset (Icecast's libxml2/iconv knows none of them): a
# `charset=idna` is an unknown charset, not a reason to run the IDNA codec on a title.
NOT_CHARSETS = frozenset({"idna", "punycode", "unicode-escape", "raw-unicode-escape",
                          "undefined"})
LATIN1 = "iso8859-1"  # Python's name of Icecast's default mount <charset>, ISO8859-1
REPLACEMENT = "\ufffd"

# Not valid in XML 1.0, or invisible: C0 controls, DEL, C1 controls, the two noncharacters.
# Lone surrogates cannot remain after `readable`.
_NOT_DISPLAYABLE = re.compile("[\x00-\x1f\x7f-\x9f\ufffe\uffff]")
# Escaped in logs: every control, every character some reader takes as a line end (VT,
# FF, FS..RS and NEL are controls; U+2028/U+2029 are not), and every surrogate.
_NOT_LOGGABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# The same plus the quote and the backslash, for the quoted fields of access.log.
_NOT_QUOTABLE = re.compile('[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff"\\\\]')
# URL path characters kept as they are: RFC 3986 unreserved, sub-delims, ":", "@", "/"
# (no "%", "?", "#", space, quotes or brackets). Non-ASCII text is kept too (an IRI).
_URL_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                      "-._~!$&'()*+,;=:@/")
_ESCAPED_BYTES = (0xDC80, 0xDCFF)  # what surrogateescape makes of bytes 0x80..0xFF


def from_wire(data: bytes) -> str:
    """Wire text for ``data``: UTF-8, each other byte kept as a lone surrogate."""
    return data.decode(WIRE_ENCODING, WIRE_ERRORS)


def to_wire(text: str) -> bytes:
    """The exact bytes ``text`` was read from (``from_wire``'s inverse).

    A surrogate that surrogateescape does not make (U+D800..U+DC7F, U+DD00..U+DFFF) has
    no bytes behind it and becomes "?" rather than raising."""
    try:
        return text.encode(WIRE_ENCODING, WIRE_ERRORS)
    except UnicodeEncodeError:
        return "".join(c if not _is_surrogate(c) or _escaped_byte(c) is not None else "?"
                       for c in text).encode(WIRE_ENCODING, WIRE_ERRORS)


def is_utf8(text: str) -> bool:
    """True if ``text`` came from valid UTF-8 (holds no surrogate)."""
    return not any(_is_surrogate(c) for c in text)


def readable(text: str) -> str:
    """``text`` as Unicode: itself if it was valid UTF-8, else its bytes read as Latin-1.

    The whole value switches, never byte by byte: a value is in one encoding or the other.
    """
    return text if is_utf8(text) else to_wire(text).decode("latin-1")


def decode_text(data: bytes) -> str:
    """Bytes as Unicode: UTF-8 if they are valid UTF-8, else Latin-1."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def decode_title(data: bytes, charset: str) -> str:
    """A title's bytes as Unicode, for stats and logs (the stream keeps the bytes).

    ``charset`` is the mount's ``<charset>``. When it is a known charset other than the
    Latin-1 default and ``data`` decodes in it, that is the title; otherwise the
    UTF-8-else-Latin-1 rule (Icecast would show a UTF-8 title on a default mount as
    mojibake in its stats; we do not copy that).
    """
    codec = charset_codec(charset)
    if codec is not None and codec != LATIN1:
        try:
            return data.decode(codec)
        except UnicodeError:  # not in that charset after all: fall back to the rule
            pass
    return decode_text(data)


def charset_codec(name: str) -> str | None:
    """Python's codec for the charset ``name``, or None if it names no charset we know
    (unknown, garbage, or a Python codec that is no charset: "rot13", "hex", "idna" …)."""
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError, TypeError):  # ValueError: an embedded NUL
        return None
    if not info._is_text_encoding or info.name in NOT_CHARSETS:  # type: ignore[attr-defined]
        return None
    return info.name


def recode(data: bytes, source: str, target: str) -> bytes:
    """``data`` converted from charset ``source`` into charset ``target``; the bytes as
    they came if either charset is unknown or ``data`` is not in ``source`` (Icecast keeps
    the value as received when its conversion fails). Characters ``target`` lacks become
    "?"."""
    source_codec, target_codec = charset_codec(source), charset_codec(target)
    if source_codec is None or target_codec is None:
        return data
    try:
        return data.decode(source_codec).encode(target_codec, errors="replace")
    except UnicodeError:
        return data


def display(text: str) -> str:
    """``text`` for a display format: ``readable``, controls replaced by U+FFFD.

    The result is valid in XML 1.0, HTML, JSON and Prometheus label values and encodes
    as strict UTF-8."""
    return _NOT_DISPLAYABLE.sub(REPLACEMENT, readable(text))


def log_safe(text: str) -> str:
    """``text`` for one log line: bytes that were not UTF-8 as ``\\xNN``, controls and line
    separators as ``\\xNN``/``\\uNNNN``. The result encodes as strict UTF-8."""
    return _NOT_LOGGABLE.sub(_escape_match, text)


def log_quoted(text: str) -> str:
    """``log_safe``, and ``"`` and ``\\`` escaped too: a quoted access.log field."""
    return _NOT_QUOTABLE.sub(_escape_match, text)


def url_path(name: str) -> str:
    """``name`` (wire text) as a URL path: "%XX" for every byte that is not valid UTF-8,
    every ASCII character not allowed raw in a path (space, "%", "?", "#", controls …) and
    every non-ASCII control or separator; other non-ASCII text stays readable.

    Unquoting the result (as ``http.parse_head`` does) gives ``name`` back exactly."""
    return "".join(_url_char(c) for c in name)


def _url_char(char: str) -> str:
    byte = _escaped_byte(char)
    if byte is not None:
        return f"%{byte:02X}"
    if char in _URL_SAFE or (ord(char) > 0x7F and not _NOT_LOGGABLE.match(char)
                             and not _NOT_DISPLAYABLE.match(char)):
        return char  # readable non-ASCII text (an IRI); C1 controls and separators are not
    return "".join(f"%{b:02X}" for b in char.encode(WIRE_ENCODING, "replace"))


def _escape_match(match: re.Match[str]) -> str:
    char = match.group()
    byte = _escaped_byte(char)
    code = ord(char) if byte is None else byte
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def _escaped_byte(char: str) -> int | None:
    code = ord(char)
    return code - 0xDC00 if _ESCAPED_BYTES[0] <= code <= _ESCAPED_BYTES[1] else None


def _is_surrogate(char: str) -> bool:
    return 0xD800 <= ord(char) <= 0xDFFF
