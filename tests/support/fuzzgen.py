"""Fuzz inputs for fanout's parsers: seeded, structure-aware generators plus byte mutation.

Every generator takes a ``random.Random`` and returns bytes (or a small tuple) shaped like
what the parser meets on the wire or on disk: mostly plausible (so the parser gets past
its first check and into the interesting code), with random lengths, controls, non-UTF-8
bytes, over-long numbers and truncations mixed in. ``mutate`` then damages a share of them
byte by byte. Inputs stay at a few KB, except the deliberate size-limit probes (heads near
``MAX_HEAD_BYTES``, digit strings past Python's 4300-digit ``int()`` limit).

``case_rng(seed, index)`` gives each case its own generator, so a failure is replayed from
(seed, index) alone, without generating the cases before it.
"""
from __future__ import annotations

import base64
import functools
import random
import struct
from typing import Any, Callable
from xml.sax.saxutils import escape, quoteattr

from fanout.config import ConfigError
from fanout.config.converters import BadValue
from fanout.config.listener_auth import OPTIONS as AUTH_OPTIONS
from fanout.config.tables import ALL_TABLES
from fanout.config.tagtable import ReadContext
from fanout.model.ogg import FLAG_BOS, FLAG_CONTINUED, FLAG_EOS, ogg_crc
from fanout.protocol.http import MAX_HEAD_BYTES, MAX_HEADER_LINES
from fanout.protocol.icy import MAX_META_TEXT
from fanout.protocol.streamlist import KH_FETCH_PREFIX, MAX_LINE
from tests.support.splits import random_pieces

Gen = Callable[[random.Random], bytes]

# Python refuses int() on decimal strings longer than this (CVE-2020-10735 mitigation):
# every "read a number from peer text" path must survive one digit more.
INT_DIGITS_LIMIT = 4300
HUGE_NUMBER = b"1" * (INT_DIGITS_LIMIT + 1)

# Bytes that matter to one parser or another: line ends, separators, quoting, escapes,
# non-UTF-8 and odd-but-valid UTF-8 (a superscript digit passes str.isdigit but not int()).
TOKENS: tuple[bytes, ...] = (
    b"\r", b"\n", b"\r\n", b"\r\n\r\n", b"\n\n", b"\n\r\n", b"\r\r\n", b"\0", b"\t", b" ",
    b"\x7f", b"\x1b", b"\x80", b"\xff", b"\xc3", b"\xc3\xa9", b"\xed\xa0\x80", b"\xef\xbb\xbf",
    b"\xb2", b"\xc2\xb2", b"\xd9\xa1", b":", b";", b"'", b"';", b"='", b'"', b"=", b"?", b"&",
    b"%", b"%ff", b"%00", b"%0d%0a", b"%2F", b"%2e%2e", b"/", b"//", b"\\", b"..", b"/../",
    b"[", b"]", b"//[", b"[::1]", b"-1", b"+", b"0", b"00000000000000000000001", b"65536",
    b"9223372036854775808", HUGE_NUMBER, b"<", b">", b"&amp;", b"&#10;", b"&#0;", b"]]>",
    b"<!--", b"<![CDATA[", b"OggS", b"\xff\xfb", b"\xff\xf1", b"ID3",
)


class CaseRandom(random.Random):
    """``random.Random`` with ``choice``/``randint``/``randrange`` drawn from one float:
    about three times faster than the exact-integer versions, which matters at 100,000
    cases a parser (the bias, under 2**-40, does not)."""

    def choice(self, seq: Any) -> Any:
        return seq[int(self.random() * len(seq))]

    def randint(self, a: int, b: int) -> int:
        return a + int(self.random() * (b - a + 1))

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:
        if stop is None:
            start, stop = 0, start
        if step != 1:
            return super().randrange(start, stop, step)
        if stop <= start:
            raise ValueError(f"empty range in randrange({start}, {stop})")
        return start + int(self.random() * (stop - start))


def case_rng(seed: int, index: int) -> random.Random:
    """The generator for case ``index`` of a run seeded with ``seed``."""
    return CaseRandom(seed * 1_000_003 + index)


def some_bytes(rng: random.Random, low: int = 0, high: int = 16) -> bytes:
    return rng.randbytes(rng.randint(low, high))


def pick(rng: random.Random, *choices: bytes) -> bytes:
    return rng.choice(choices)


# ---- byte-level mutation ----------------------------------------------------------------

def _flip_bit(data: bytearray, rng: random.Random) -> None:
    if data:
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)


def _set_byte(data: bytearray, rng: random.Random) -> None:
    if data:
        data[rng.randrange(len(data))] = rng.randrange(256)


def _insert_token(data: bytearray, rng: random.Random) -> None:
    at = rng.randint(0, len(data))
    data[at:at] = rng.choice(TOKENS)


def _insert_random(data: bytearray, rng: random.Random) -> None:
    at = rng.randint(0, len(data))
    data[at:at] = some_bytes(rng, 1, 8)


def _delete_span(data: bytearray, rng: random.Random) -> None:
    if data:
        at = rng.randrange(len(data))
        del data[at : at + rng.randint(1, 32)]


def _duplicate_span(data: bytearray, rng: random.Random) -> None:
    if data:
        at = rng.randrange(len(data))
        span = data[at : at + rng.randint(1, 64)]
        data[at:at] = span * rng.randint(1, 4)


def _truncate(data: bytearray, rng: random.Random) -> None:
    del data[rng.randint(0, len(data)) :]


_MUTATIONS = (_flip_bit, _set_byte, _insert_token, _insert_token, _insert_random, _delete_span,
              _duplicate_span, _truncate)


def mutate(data: bytes, rng: random.Random, rounds: int = 4) -> bytes:
    """``data`` damaged by 1..``rounds`` random edits (bit flips, tokens, cuts, repeats)."""
    out = bytearray(data)
    for _ in range(rng.randint(1, rounds)):
        rng.choice(_MUTATIONS)(out, rng)
    return bytes(out)


def maybe_mutated(generate: Gen, share: float) -> Gen:
    """``generate``, with ``share`` of its outputs passed through ``mutate``."""

    def generator(rng: random.Random) -> bytes:
        data = generate(rng)
        return mutate(data, rng) if rng.random() < share else data

    return generator


# ---- numbers and text that peers put in headers -----------------------------------------

_NUMBERS = (b"0", b"1", b"2", b"16000", b"8192", b"-1", b"+5", b" 7", b"1x", b"x", b"", b"0x10",
            b"99999", b"9223372036854775808", b"\xb2", b"\xc2\xb2", b"\xd9\xa1\xd9\xa2",
            b"0" * 40 + b"1", HUGE_NUMBER)


def number_text(rng: random.Random) -> bytes:
    """A decimal-ish field: usually small, sometimes signed, spaced, huge or not a number."""
    if rng.random() < 0.1:
        return str(rng.randint(0, 70000)).encode()
    return rng.choice(_NUMBERS)


# Maps any byte to a printable one (controls become letters): random text without controls.
_PRINTABLE = bytes(byte if 0x20 <= byte != 0x7F else 0x61 + byte % 26 for byte in range(256))


def header_value(rng: random.Random) -> bytes:
    """A value a request head may carry: printable ASCII, Latin-1 or UTF-8 text, numbers
    of every size, blanks and tabs, now and then a long run; no controls."""
    kind = rng.random()
    if kind < 0.4:
        return rng.choice((b"My Radio", b"caf\xe9", b"caf\xc3\xa9", b"1", b"yes", b"a=b;c=d", b" x\t"))
    if kind < 0.6:
        return number_text(rng)
    if kind < 0.97:
        return rng.randbytes(rng.randint(0, 24)).translate(_PRINTABLE)
    return b"v" * rng.randint(200, 2000)


def any_value(rng: random.Random) -> bytes:
    """``header_value``, or (a tenth of the time) random bytes and controls."""
    if rng.random() < 0.9:
        return header_value(rng)
    return some_bytes(rng, 0, 24) if rng.random() < 0.5 else bytes(
        rng.choices(b" \tab:;'=\x01\x7f\xff", k=rng.randint(0, 40)))


# ---- HTTP request heads (HeadParser / parse_head) ---------------------------------------

_METHODS = (b"GET", b"GET", b"GET", b"HEAD", b"SOURCE", b"SOURCE", b"PUT", b"POST", b"OPTIONS",
            b"STATS", b"get", b"Source", b"DELETE")
_PROTOCOLS = (b"HTTP/1.0", b"HTTP/1.1", b"ICE/1.0", b"ICY/1.0")
_BAD_PROTOCOLS = (b"http/1.0", b"HTTP/2", b"HTTP/1.0.0", b"HTTP", b"HTTP/x.y", b"FTP/1.0", b"HTTP/10.01")
_SEGMENTS = (b"live.mp3", b"stream.ogg", b"admin", b"metadata", b"listclients", b"stats",
             b"status-json.xsl", b"streamlist.txt", b"streams", b"..", b".", b"", b"%2e%2e",
             b"%ff", b"%C3%A9", b"%00", b"%0d%0a", b"a\\b", b"caf\xe9", b"%", b"x" * 300)
_QUERY_KEYS = (b"mode", b"mount", b"song", b"title", b"artist", b"url", b"charset", b"pass",
               b"rserver", b"rport", b"interval", b"id", b"user", b"%zz", b"", b"a+b")
_QUERY_VALUES = (b"updinfo", b"/live.mp3", b"utf-8", b"latin1", b"idna", b"bogus", b"%ff%fe",
                 b"caf%E9", b"a+b", b"%0d%0a", b"")
_HEADER_NAMES = (b"Host", b"User-Agent", b"Authorization", b"Icy-MetaData", b"ice-name",
                 b"ice-description", b"ice-url", b"ice-genre", b"ice-public", b"ice-bitrate",
                 b"ice-audio-info", b"ice-password", b"Content-Type", b"Content-Length",
                 b"Transfer-Encoding", b"Expect", b"Connection", b"Range", b"icy-metaint",
                 b"icy-br", b"icy-name", b"icy-pub", b"X-Forwarded-For", b"Referer")


def request_target(rng: random.Random) -> bytes:
    if rng.random() < 0.03:
        return pick(rng, b"*", b"http://host:8000/live.mp3", b"live.mp3", b"/\xff", b"/caf\xc3\xa9")
    path = b"".join(b"/" + rng.choice(_SEGMENTS) for _ in range(rng.randint(1, 3)))
    if rng.random() < 0.5:
        pairs = [rng.choice(_QUERY_KEYS) + rng.choice((b"=", b"", b"==")) +
                 rng.choice((*_QUERY_VALUES, number_text(rng)))
                 for _ in range(rng.randint(0, 4))]
        path += b"?" + rng.choice((b"&", b";", b"&&")).join(pairs)
    return path.replace(b" ", b"+")


def request_line(rng: random.Random) -> bytes:
    return rng.choice(_METHODS) + b" " + request_target(rng) + b" " + rng.choice(_PROTOCOLS)


def authorization_value(rng: random.Random) -> bytes:
    credentials = pick(rng, b"source:hackme", b"admin:x:y", b"nocolon", b"", b"\xff:\xfe",
                       some_bytes(rng, 0, 12))
    token = base64.b64encode(credentials)
    return pick(rng, b"Basic ", b"basic  ", b"Bearer ", b"Basic") + rng.choice(
        (token, token[:-1], token + b"=", b"!!!", b"\xc3\xa9", b""))


def header_line(rng: random.Random) -> bytes:
    """A header line a head may carry (its value may still be odd: Latin-1, huge numbers)."""
    name = rng.choice(_HEADER_NAMES) if rng.random() < 0.9 else bytes(
        rng.choices(b"!#$%&'*+-.^_`|~0aZ", k=rng.randint(1, 8)))
    if name == b"Authorization":
        value = authorization_value(rng)
    elif name == b"ice-audio-info":
        value = b"bitrate=" + number_text(rng) + b";samplerate=44100"
    elif name == b"Expect":
        value = pick(rng, b"100-continue", b"100-CONTINUE", b"")
    else:
        value = header_value(rng)
    return name + pick(rng, b": ", b":", b":\t") + value


# Grammar-level damage to one line of a head (byte-level damage is ``mutate``'s job).
_LINE_FLAWS: tuple[Callable[[bytes, random.Random], bytes], ...] = (
    lambda line, rng: rng.choice((b" ", b"\t")) + line,  # obsolete line folding
    lambda line, rng: line.replace(b":", b" :", 1),  # blank before the colon
    lambda line, rng: line.replace(b":", b"", 1),  # no colon
    lambda line, rng: line + rng.choice((b"\x01", b"\x7f", b"\0", b"\x1b", b"\r")),  # a control
    lambda line, rng: line + any_value(rng),  # random bytes
    lambda line, rng: some_bytes(rng, 0, 12),  # not a line of this protocol at all
    lambda line, rng: line.replace(b" ", rng.choice((b"  ", b"\t")), 1),  # request line spacing
    lambda line, rng: line.rsplit(b" ", 1)[0] + b" " + rng.choice(_BAD_PROTOCOLS),
    lambda line, rng: rng.choice((b"", b"GET ", b"G\xc3\x89T")) + line.partition(b" ")[2],  # method
)


def request_head(rng: random.Random) -> bytes:
    """A request head: request line, header lines, usually the blank line, maybe body bytes.
    A third of them have one line damaged by a grammar-level flaw."""
    end = pick(rng, b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r\r\n")
    count = rng.randint(0, 6) if rng.random() < 0.97 else rng.randint(
        MAX_HEADER_LINES - 2, MAX_HEADER_LINES + 2)
    lines = [request_line(rng), *(header_line(rng) for _ in range(count))]
    if rng.random() < 0.35:
        flawed = rng.randrange(len(lines))
        lines[flawed] = rng.choice(_LINE_FLAWS)(lines[flawed], rng)
    head = end.join(lines) + end
    if rng.random() < 0.02:  # a size-limit probe: pad the last header to near the bound
        head += b"X-Pad: " + b"p" * max(0, MAX_HEAD_BYTES - len(head) + rng.randint(-12, 12)) + end
    if rng.random() < 0.9:
        head += end + some_bytes(rng, 0, 24)
    return head


# ---- ICY metadata streams (IcyStripper, parse_block_text) -------------------------------

def icy_title(rng: random.Random) -> bytes:
    """Metadata text as encoders send it, apostrophes, NULs and oddities included."""
    kind = rng.random()
    if kind < 0.8:
        title = rng.choice((b"Artist - Title", b"Don't Stop", b"a';b", b"", b"caf\xe9", b"\0\0", b"'"))
    else:
        title = some_bytes(rng, 0, 40) if kind < 0.95 else b"t" * rng.randint(0, 600)
    text = b"StreamTitle='" + title + b"';"
    if rng.random() < 0.3:
        text += b"StreamUrl='" + pick(rng, b"http://x/", b"", b"'") + b"';"
    if rng.random() < 0.1:
        text = pick(rng, b"", b"StreamTitle=", b"StreamTitle='x", b"=';", b"a='b", b"garbage")
    return text


def icy_stream(rng: random.Random) -> tuple[int, bytes, bytes, list[bytes]]:
    """(metaint, body, audio, block payloads): a well-formed body and what strips out of it."""
    metaint = rng.choice((1, 2, 7, 16, rng.randint(1, 300), 1000))
    audio: list[bytes] = []
    body: list[bytes] = []
    payloads: list[bytes] = []
    size, wanted = 0, rng.randint(0, 400)
    while size < wanted:
        run = rng.randbytes(metaint)
        audio.append(run)
        text = icy_title(rng)[:MAX_META_TEXT]
        units = 0 if rng.random() < 0.2 else len(text) // 16 + 1
        payload = text.ljust(units * 16, b"\0") if units else b""
        body += [run, bytes((units,)), payload]
        size += metaint + 1 + len(payload)
        if units:
            payloads.append(payload)
    if rng.random() < 0.5:  # the stream stops in the middle of something
        body.append(rng.randbytes(rng.randint(0, metaint)))
        audio.append(body[-1])
    return metaint, b"".join(body), b"".join(audio), payloads


# ---- stream lists (parse_streamlist) ----------------------------------------------------

_MOUNTS = (b"/live.mp3", b"/live.ogg", b"/a/b.aac", b"/my%20radio", b"/caf%C3%A9", b"/caf\xc3\xa9",
           b"/%ff%fe", b"/x?y=1", b"/", b"/admin/stats", b"/../x", b"/a/../b", b"/a/./b", b"/a//b",
           b"/a\\b", b"/%5c", b"/%2e%2e/x", b"/%0d%0aX-Injected:%20yes", b"/%00", b"/%09",
           b"//[", b"//host/x", b"/[::1]", b"/#frag", b"/%", b"/%zz", b"/ space", b"/\tx")


def streamlist_line(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.55:
        return rng.choice(_MOUNTS)
    if kind < 0.75:
        mount = rng.choice(_MOUNTS).replace(b"?", b"%3F")
        return KH_FETCH_PREFIX.encode() + mount + pick(rng, b"", b"&mount=/other", b"&x")
    if kind < 0.8:
        return b"/" + b"m" * rng.randint(MAX_LINE - 3, MAX_LINE + 2)
    if kind < 0.9:
        return pick(rng, b"http://other:8000/x", b"not a mount", b"", b"\xff\xfe", b"mount")
    return b"/" + some_bytes(rng, 0, 20)


def streamlist_body(rng: random.Random) -> bytes:
    end = pick(rng, b"\r\n", b"\r\n", b"\n", b"\r\r\n", b"\r")
    return end.join(streamlist_line(rng) for _ in range(rng.randint(0, 12))) + end


# ---- icecast.xml from the real tag tables (parse_config) --------------------------------

# (section, element) → the section its children are read by.
_SUBSECTIONS: dict[tuple[str, str], str] = {
    ("icecast", "listen-socket"): "listen-socket", ("icecast", "limits"): "limits",
    ("icecast", "authentication"): "authentication", ("icecast", "http-headers"): "http-headers",
    ("icecast", "mount"): "mount", ("icecast", "relay"): "relay", ("icecast", "master"): "master",
    ("icecast", "redirect"): "redirect", ("icecast", "paths"): "paths",
    ("icecast", "logging"): "logging", ("http-headers", "header"): "header",
    ("mount", "http-headers"): "http-headers", ("mount", "authentication"): "mount authentication",
    ("mount authentication", "option"): "auth option", ("relay", "host"): "relay host",
    ("relay", "master"): "relay host", ("relay", "upstream"): "upstream",
}
_AUTH_OPTIONS = ("listener_add", "listener_remove", "filename", "headers", "header_prefix",
                 "timeout", "auth_header", "timelimit_header", "username", "password",
                 "allow_duplicate_users", "mount_add", "stream_auth", "bogus", "")
_CONFIG_VALUES = (
    "0", "1", "-1", "2", "200", "404", "8000", "65535", "65536", "+5", "007", "1e3", "0x10", "", "  3  ",
    "9" * 30, HUGE_NUMBER.decode(), "true", "No", "yes", "maybe", "/live.mp3", "/*.mp3",
    "/live/*", "/[a-z]*", "/[", "/[!]x", "/[]-]", "/[z-a]", "/\\", "/\\[x", "/[[:alpha:]]",
    "live", "http://auth.example/add", "https://u:p@h:8443/a?b", "http://[::1]:80/",
    "http://[x/", "http://h:99999/", "http://h:0/", "ftp://h/", "http:///", "http://h:x/",
    "X-Header", "bad header", "icecast-auth-user: 1", "a,b, c", "a,,b", "caf\xe9", "\u2603",
    "a\nb", "a\tb", "a&#1;b", "1 2", "normal", "default", "url", "htpasswd", "URL",
)


def _config_value(rng: random.Random, accepted: tuple[str, ...] = ()) -> str:
    """Usually one of ``accepted`` (values the element's own reader takes), else anything."""
    if accepted and rng.random() < 0.7:
        return rng.choice(accepted)
    if rng.random() < 0.9:
        return rng.choice(_CONFIG_VALUES)
    return "".join(rng.choice("ab1/:*[]-\\!^? \t\n&;'\"<é\u2603") for _ in range(rng.randint(0, 12)))


def _reads(read: Callable[[str], object], value: str) -> bool:
    try:
        read(value)
    except (ConfigError, BadValue):
        return False
    return True


@functools.cache
def _accepted(section: str, name: str) -> tuple[str, ...]:
    """The ``_CONFIG_VALUES`` that the tag table's reader for ``name`` accepts, so most
    generated values get past it and the document is read further."""
    tag = ALL_TABLES[section].get(name)
    if tag is None or tag.read is None or (section, name) in _SUBSECTIONS:
        return ()
    read = tag.read
    return tuple(value for value in _CONFIG_VALUES if _reads(lambda text: read(text, "-", ReadContext()), value))


@functools.cache
def _accepted_option(name: str) -> tuple[str, ...]:
    """The same for ``<option name=… value=…/>`` of a mount's authentication."""
    converters = [options[name][1] for options in AUTH_OPTIONS.values() if name in options]
    return tuple(value for value in _CONFIG_VALUES if converters and _reads(converters[0], value))


def _text(value: str, rng: random.Random) -> str:
    """Element text: escaped, sometimes as CDATA or with a character reference."""
    kind = rng.random()
    if kind < 0.05 and "]]>" not in value:
        return f"<![CDATA[{value}]]>"
    if kind < 0.1:
        return escape(value) + rng.choice(("&#10;", "&#13;", "&#x9;", "&#x7f;", "&#xe9;", "&lt;"))
    return escape(value)


def _attributes(section: str, rng: random.Random) -> str:
    names = [name[1:] for name in ALL_TABLES[section] if name.startswith("@")]
    if section == "auth option":
        option = rng.choice(_AUTH_OPTIONS)
        given = {"name": option, "value": _config_value(rng, _accepted_option(option))}
    else:
        given = {name: _config_value(rng, _accepted(section, "@" + name)) for name in names
                 if rng.random() < 0.8}
    if rng.random() < 0.05:
        given["unknown"] = "1"
    return "".join(f" {name}={quoteattr(value)}" for name, value in given.items()
                   if rng.random() < 0.95)


def _element(parent: str, name: str, section: str | None, rng: random.Random, depth: int) -> str:
    if section is None:  # a value element (or one we accept and ignore)
        inner = _text(_config_value(rng, _accepted(parent, name)), rng)
        if rng.random() < 0.03:
            inner += "<nested>x</nested>"
        return f"<{name}>{inner}</{name}>" if rng.random() < 0.95 else f"<{name}/>"
    return f"<{name}{_attributes(section, rng)}>{_children(section, rng, depth + 1)}</{name}>"


@functools.cache
def _element_names(section: str) -> tuple[str, ...]:
    return tuple(name for name in ALL_TABLES[section] if not name.startswith("@"))


def _children(section: str, rng: random.Random, depth: int) -> str:
    names = _element_names(section)
    parts = []
    for _ in range(rng.randint(0, 5 if depth < 2 else 2) if names else 0):
        name = rng.choice(names) if rng.random() < 0.93 else rng.choice(("unknown", "x-y", "Port"))
        sub = _SUBSECTIONS.get((section, name))
        parts.append(_element(section, name, sub if depth < 4 else None, rng, depth))
    if rng.random() < 0.05:
        parts.insert(rng.randint(0, len(parts)), rng.choice(("stray text", "<!-- c -->", "<?pi x?>")))
    return "".join(parts)


def config_xml(rng: random.Random) -> bytes:
    """An ``icecast.xml`` built from the tag tables: real elements and attributes, nested
    as the tables nest them, with random values (in and out of range), unknown elements,
    CDATA, character references, and now and then a declaration, DOCTYPE or other root."""
    root = "icecast" if rng.random() < 0.97 else rng.choice(("Icecast", "config", "icecast:x"))
    body = f"<{root}>{_children('icecast', rng, 0)}</{root}>"
    prolog = "" if rng.random() < 0.6 else rng.choice((
        '<?xml version="1.0"?>\n', '<?xml version="1.0" encoding="ISO-8859-1"?>', "\ufeff",
        '<?xml version="1.1"?>', '<?xml version="1.0" encoding="bogus"?>',
        '<!DOCTYPE icecast [<!ENTITY e "x">]>', '<!DOCTYPE icecast SYSTEM "file:///etc/passwd">'))
    encoding = "latin-1" if "8859" in prolog and rng.random() < 0.5 else "utf-8"
    return (prolog + body).encode(encoding, "replace")


# ---- upstream responses (head_end, parse_response_head, parse_location) -----------------

_LOCATIONS = (b"http://h/x", b"http://h:8000/x?y", b"http://h", b"http://h:/x", b"http://:80/x",
              b"https://h/x", b"HTTP://h/x", b"http://h:99999/x", b"http://h:0/x", b"http://h:\xb2/",
              b"http://a..b/x", b"http://" + b"a" * 70 + b"/x", b"http://h\x00x/", b"/relative",
              b"http://[::1]:8000/x", b"http://h:80:80/", b"")


def response_head(rng: random.Random) -> bytes:
    """An upstream's response head (status line, headers, blank line) and some body bytes."""
    status = pick(rng, b"HTTP/1.0 200 OK", b"ICY 200 OK", b"HTTP/1.1 302 Found", b"HTTP/1.0 404",
                  b"HTTP/1.0 401 Unauthorized", b"HTTP/1.0 2000 OK", b"HTTP/1.0 20x", b"",
                  b"OK2", b"HTTP/1.0  200 OK", b" HTTP/1.0 200 OK ", some_bytes(rng, 0, 12))
    lines = [status]
    for _ in range(rng.randint(0, 8)):
        name = pick(rng, b"Content-Type", b"icy-metaint", b"Location", b"icy-name", b"ice-audio-info",
                    b"Transfer-Encoding", b"icy-br", b"Server", b"", b" x ", some_bytes(rng, 0, 6))
        value = {b"icy-metaint": number_text, b"Location": lambda r: r.choice(_LOCATIONS)}.get(
            name, any_value)(rng)
        lines.append(name + pick(rng, b": ", b":", b" :") + value)
    end = pick(rng, b"\r\n", b"\n", b"\r\r\n")
    return end.join(lines) + end + pick(rng, b"\r\n", b"\n", b"\r\n", b"") + some_bytes(rng, 0, 20)


# ---- Shoutcast source handshake (HandshakeParser) ---------------------------------------

def shoutcast_handshake(rng: random.Random) -> bytes:
    password = pick(rng, b"hackme", b"", b"caf\xe9", b"p" * 1100, some_bytes(rng, 0, 10))
    end = pick(rng, b"\r\n", b"\n", b"\r\r\n")
    headers = [header_line(rng).lower().replace(b": ", b":") for _ in range(rng.randint(0, 6))]
    blank = end if rng.random() < 0.85 else b""
    return password + end + b"".join(line + end for line in headers) + blank + some_bytes(rng, 0, 30)


# ---- URL-auth server answers (read_verdict) ---------------------------------------------

def auth_response_head(rng: random.Random) -> bytes:
    lines = [pick(rng, b"HTTP/1.1 200 OK", b"HTTP/1.0 403 Forbidden", b"", some_bytes(rng, 0, 8))]
    for _ in range(rng.randint(0, 6)):
        lines.append(pick(rng, b"icecast-auth-user: 1", b"icecast-auth-user: 0", b"Icecast-Auth-User:1",
                          b"icecast-auth-timelimit: ", b"icecast-auth-message: ", b"X: y") +
                     rng.choice((b"", number_text(rng), any_value(rng))))
    end = pick(rng, b"\r\n", b"\n")
    return end.join(lines) + end + end


AUTH_HEADER_OPTIONS = ("icecast-auth-user: 1\r\n", "icecast-auth-user", "x-ok", "", "\xe9")
TIMELIMIT_OPTIONS = ("icecast-auth-timelimit:", "", "x-limit: ", "\xe9")


# ---- htpasswd files (parse_htpasswd, without_user) --------------------------------------

def htpasswd_file(rng: random.Random) -> bytes:
    lines = []
    for _ in range(rng.randint(0, 12)):
        user = pick(rng, b"alice", b"bob", b"a:b", b"", b"caf\xe9", b"#c", b" ", some_bytes(rng, 0, 6))
        lines.append(user + pick(rng, b":", b":", b"", b"::") +
                     pick(rng, b"5f4dcc3b5aa765d61d8327deb882cf99", b"", b"x:y", some_bytes(rng, 0, 8)))
    end = pick(rng, b"\n", b"\r\n", b"\r")
    return end.join(lines) + pick(rng, end, b"")


# ---- audio (Ingest: Ogg pages, MPEG and ADTS frames) ------------------------------------

_OGG_HEADER = struct.Struct("<4sBBqIIIB")


def ogg_page(rng: random.Random, serial: int, flags: int, granule: int) -> bytes:
    """One Ogg page with a valid CRC (unless the caller damages it)."""
    lacing = bytes(rng.choice((0, 1, 17, 255, rng.randrange(256))) for _ in range(rng.randint(0, 6)))
    body = rng.randbytes(sum(lacing))
    head = _OGG_HEADER.pack(b"OggS", 0, flags, granule, serial, rng.randrange(8), 0, len(lacing))
    page = head + lacing + body
    crc = ogg_crc(page)
    return page[:22] + crc.to_bytes(4, "little") + page[26:]


def ogg_stream(rng: random.Random) -> bytes:
    """Ogg pages of a few logical streams (BOS, header and data pages, EOS), chained links,
    garbage and false capture patterns between them."""
    parts = []
    serials = [rng.randrange(2**32) for _ in range(rng.randint(1, 3))]
    for _ in range(rng.randint(1, 12)):
        kind = rng.random()
        if kind < 0.1:
            parts.append(pick(rng, b"OggS", b"OggS\0", b"Ogg", some_bytes(rng, 1, 40)))
            continue
        flags = rng.choice((0, 0, 0, FLAG_BOS, FLAG_EOS, FLAG_CONTINUED, rng.randrange(256)))
        if flags & FLAG_BOS and rng.random() < 0.3:
            serials.append(rng.randrange(2**32))
        granule = rng.choice((0, -1, rng.randrange(2**40)))
        parts.append(ogg_page(rng, rng.choice(serials), flags, granule))
    return b"".join(parts)


def mpeg_frame(rng: random.Random) -> bytes:
    """A frame whose header is valid more often than not, with a random body."""
    b1 = 0xE0 | rng.choice((3, 2, 0, 1)) << 3 | rng.choice((1, 2, 3, 0)) << 1 | rng.randrange(2)
    b2 = rng.randrange(1, 15) << 4 | rng.choice((0, 1, 2, 3)) << 2 | rng.randrange(4)
    return bytes((0xFF, b1, b2, rng.randrange(256))) + rng.randbytes(rng.randint(0, 500))


def adts_frame(rng: random.Random) -> bytes:
    body = rng.randbytes(rng.randint(0, 400))
    length = len(body) + 7 if rng.random() < 0.8 else rng.randrange(8192)
    b1 = 0xF1 if rng.random() < 0.8 else rng.randrange(256)
    b2 = rng.randrange(13) << 2 | rng.randrange(4)
    return bytes((0xFF, b1, b2, (length >> 11) & 3, (length >> 3) & 0xFF,
                  (length & 7) << 5 | 0x1F, 0xFC)) + body


def frames_stream(frame: Gen) -> Gen:
    """Runs of repeated frames (the tracker locks onto pairs) with garbage between."""

    def generate(rng: random.Random) -> bytes:
        parts = []
        for _ in range(rng.randint(1, 6)):
            parts.append(frame(rng) * rng.randint(1, 4))
            if rng.random() < 0.3:
                parts.append(pick(rng, b"ID3\x03\0\0\0\0\0\x10" + bytes(16), b"\xff", some_bytes(rng, 1, 30)))
        return b"".join(parts)

    return generate


def pieces(data: bytes, rng: random.Random, byte_by_byte: float = 0.002) -> list[bytes]:
    """``data`` cut at 0..8 random points; a ``byte_by_byte`` share of the time, at every byte
    (the worst case for incremental parsers, kept rare because it is slow in Python)."""
    if rng.random() < byte_by_byte:
        return random_pieces(data, rng, 1)
    cuts = sorted(rng.sample(range(1, len(data)), min(rng.randint(0, 8), max(0, len(data) - 1))))
    bounds = [0, *cuts, len(data)]
    return [data[start:end] for start, end in zip(bounds, bounds[1:])]
