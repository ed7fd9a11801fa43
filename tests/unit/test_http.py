"""Request-head parsing (fanout.protocol.http) and Basic auth (fanout.protocol.auth).

The corpus in ``requests/`` (see its README) is fed whole, line by line, byte by byte and
in seeded random splits; every way must give the same Request, leftover or error.
"""

from __future__ import annotations

import base64
import random
import runpy
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from fanout.protocol.auth import Credentials, basic_credentials, credentials_match
from fanout.protocol.errors import CLOSE_SILENTLY, ProtocolError
from fanout.protocol.http import (
    MAX_HEAD_BYTES,
    MAX_HEADER_LINES,
    BadHead,
    HeadParser,
    Request,
    is_source_method,
    lenient_request,
    parse_head,
    validate_mount_path,
    wants_continue,
    wants_icy_metadata,
)

CORPUS = Path(__file__).parent / "requests"
SEEDS = (1, 2, 3)

# --- the corpus ----------------------------------------------------------------------


def load_raw(path: Path) -> bytes:
    """Raw bytes of a ``.http`` file: newlines are layout, escapes are decoded."""
    text = path.read_text("ascii").replace("\n", "")
    return text.encode("latin-1").decode("unicode_escape").encode("latin-1")


def whole(raw: bytes, seed: int) -> list[bytes]:
    return [raw]


def by_line(raw: bytes, seed: int) -> list[bytes]:
    return raw.splitlines(keepends=True)


def byte_by_byte(raw: bytes, seed: int) -> list[bytes]:
    return [raw[i : i + 1] for i in range(len(raw))]


def random_splits(raw: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(raw)), k=min(len(raw) - 1, rng.randint(1, 8))))
    return [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)])]


Splitter = Callable[[bytes, int], list[bytes]]
SPLITTERS: list[tuple[str, Splitter, int]] = [
    ("whole", whole, 0),
    ("by_line", by_line, 0),
    ("byte_by_byte", byte_by_byte, 0),
    *((f"random_{seed}", random_splits, seed) for seed in SEEDS),
]


def corpus_cases() -> Iterator[Any]:
    for http_file in sorted(CORPUS.glob("*.http")):
        expected = runpy.run_path(str(http_file.with_suffix(".py")))
        for split_name, splitter, seed in SPLITTERS:
            chunks = splitter(load_raw(http_file), seed)
            yield pytest.param(chunks, expected, id=f"{http_file.stem}-{split_name}")


def feed_all(chunks: list[bytes]) -> tuple[Request, bytes]:
    """Feed chunks as a server would; return the Request and every byte after the head."""
    parser = HeadParser()
    for index, chunk in enumerate(chunks):
        request = parser.feed(chunk)
        if request is not None:
            return request, parser.leftover + b"".join(chunks[index + 1 :])
    raise AssertionError("the head never completed")


@pytest.mark.parametrize(("chunks", "expected"), corpus_cases())
def test_corpus_request(chunks: list[bytes], expected: dict[str, Any]) -> None:
    if "error" in expected:
        with pytest.raises(ProtocolError) as caught:
            feed_all(chunks)
        assert caught.value.status == expected["error"]
        return
    request, leftover = feed_all(chunks)
    fields = dict(expected["request"])
    assert leftover == fields.pop("leftover", leftover)
    assert {name: getattr(request, name) for name in fields} == fields


def test_corpus_has_a_py_expectation_for_every_http_file() -> None:
    stems = {path.stem for path in CORPUS.glob("*.http")}
    assert stems == {path.stem for path in CORPUS.glob("*.py")}


# --- size limits ---------------------------------------------------------------------


def head_of_size(size: int) -> bytes:
    """A valid head of exactly ``size`` bytes, blank line included."""
    start, end = b"GET / HTTP/1.0\r\nX-Pad: ", b"\r\n\r\n"
    return start + b"p" * (size - len(start) - len(end)) + end


def head_with_lines(count: int) -> bytes:
    lines = b"".join(b"X-H%d: v\r\n" % i for i in range(count))
    return b"GET / HTTP/1.0\r\n" + lines + b"\r\n"


@pytest.mark.parametrize(("split_name", "splitter", "seed"), SPLITTERS)
def test_head_of_exactly_max_bytes_is_accepted(split_name: str, splitter: Splitter, seed: int) -> None:
    request, _ = feed_all(splitter(head_of_size(MAX_HEAD_BYTES), seed))
    assert request.header("x-pad") == "p" * (MAX_HEAD_BYTES - 27)


@pytest.mark.parametrize(("split_name", "splitter", "seed"), SPLITTERS)
def test_head_one_byte_over_max_is_400(split_name: str, splitter: Splitter, seed: int) -> None:
    with pytest.raises(ProtocolError) as caught:
        feed_all(splitter(head_of_size(MAX_HEAD_BYTES + 1), seed))
    assert (caught.value.status, caught.value.message) == (400, "request header too large")


def test_oversized_head_is_refused_before_its_end_arrives() -> None:
    parser = HeadParser()
    parser.feed(b"GET / HTTP/1.0\r\nX-Pad: " + b"p" * (MAX_HEAD_BYTES - 30))
    with pytest.raises(ProtocolError):
        parser.feed(b"p" * 30)


def test_stream_bytes_after_a_full_size_head_do_not_count() -> None:
    parser = HeadParser()
    assert parser.feed(head_of_size(MAX_HEAD_BYTES) + b"\xff" * 10_000) is not None
    assert parser.leftover == b"\xff" * 10_000


@pytest.mark.parametrize(("split_name", "splitter", "seed"), SPLITTERS)
def test_max_header_lines_are_accepted(split_name: str, splitter: Splitter, seed: int) -> None:
    request, _ = feed_all(splitter(head_with_lines(MAX_HEADER_LINES), seed))
    assert len(request.headers) == MAX_HEADER_LINES


@pytest.mark.parametrize(("split_name", "splitter", "seed"), SPLITTERS)
def test_one_header_line_too_many_is_400(split_name: str, splitter: Splitter, seed: int) -> None:
    with pytest.raises(ProtocolError) as caught:
        feed_all(splitter(head_with_lines(MAX_HEADER_LINES + 1), seed))
    assert caught.value.status == 400


# --- parser states -------------------------------------------------------------------


def test_feed_returns_none_until_the_blank_line() -> None:
    parser = HeadParser()
    assert parser.feed(b"GET / HTTP/1.0\r\n") is None
    assert parser.feed(b"") is None
    assert parser.feed(b"\r\n") is not None


def test_feed_after_the_request_is_a_caller_error() -> None:
    parser = HeadParser()
    parser.feed(b"GET / HTTP/1.0\r\n\r\n")
    with pytest.raises(RuntimeError):
        parser.feed(b"more")


def test_feed_after_a_protocol_error_is_a_caller_error() -> None:
    parser = HeadParser()
    with pytest.raises(ProtocolError):
        parser.feed(b"NONSENSE\r\n\r\n")
    with pytest.raises(RuntimeError):
        parser.feed(b"GET / HTTP/1.0\r\n\r\n")


def test_blank_line_of_lf_then_crlf_ends_the_head() -> None:
    request = HeadParser().feed(b"GET / HTTP/1.0\nHost: a\n\r\nrest")
    assert request is not None and request.header("host") == "a"


def test_parse_head_works_without_the_parser() -> None:
    assert parse_head(b"GET /x?a=1 HTTP/1.0\r\nHost: h").query == (("a", "1"),)


# --- Request helpers -----------------------------------------------------------------

REQUEST = parse_head(b"GET /live?mount=/a&mount=/b&Mode=x HTTP/1.0\r\nX-Twice: 1\r\nx-twice: 2")


def test_header_lookup_ignores_case() -> None:
    assert REQUEST.header("X-TWICE") == "1"


def test_header_returns_the_first_of_duplicates() -> None:
    assert REQUEST.header("x-twice") == "1"


def test_missing_header_gives_the_default() -> None:
    assert REQUEST.header("host") is None
    assert REQUEST.header("host", "none") == "none"


def test_query_value_returns_the_first_of_duplicates() -> None:
    assert REQUEST.query_value("mount") == "/a"


def test_query_value_is_case_sensitive() -> None:
    assert REQUEST.query_value("mode") is None
    assert REQUEST.query_value("mode", "d") == "d"


def test_protocol_error_carries_message_and_status() -> None:
    error = ProtocolError("Mountpoint in use", 403)
    assert (str(error), error.message, error.status) == ("Mountpoint in use", "Mountpoint in use", 403)
    assert CLOSE_SILENTLY == 0


# --- predicates ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "expected"), [("SOURCE", True), ("PUT", True), ("put", True), ("GET", False), ("POST", False)]
)
def test_is_source_method(method: str, expected: bool) -> None:
    assert is_source_method(method) is expected


@pytest.mark.parametrize(
    "path", ["/", "/live", "/live.mp3", "/a/b.ogg", "/live/", "/.hidden", "/a..b", "/a b", "/caf\u00e9"]
)
def test_valid_mount_path_is_returned(path: str) -> None:
    assert validate_mount_path(path) == path


@pytest.mark.parametrize(
    "path",
    ["", "live", "//live", "/a//b", "/./live", "/a/../b", "/a/.", "/a/..", "/..", "/.../x",
     "\\live", "/a\\..\\b", "/a\\\\b", "/li\x00ve", "/li\nve", "/li\x7fve"],
)
def test_invalid_mount_path_is_400(path: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        validate_mount_path(path)
    assert caught.value.status == 400


def request_with(*headers: str) -> Request:
    return parse_head(b"\r\n".join([b"GET / HTTP/1.1", *(h.encode() for h in headers)]))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (("Expect: 100-continue",), True),
        (("Expect: 100-CONTINUE",), True),
        (("Expect: foo, 100-continue",), True),
        (("Expect: x", "Expect: 100-continue"), True),
        (("Expect: 200-ok",), False),
        ((), False),
    ],
)
def test_wants_continue(headers: tuple[str, ...], expected: bool) -> None:
    assert wants_continue(request_with(*headers)) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), (" 1", True), ("2", True), ("1x", True), ("-1", True),
     ("0", False), ("", False), ("x", False), ("00", False)],
)
def test_icy_metadata_reads_like_atoi(value: str, expected: bool) -> None:
    assert wants_icy_metadata(request_with(f"Icy-MetaData: {value}")) is expected


def test_no_icy_metadata_header_means_no_metadata() -> None:
    assert wants_icy_metadata(request_with()) is False


# --- Basic auth ----------------------------------------------------------------------


def basic(raw: bytes, scheme: str = "Basic") -> Request:
    return request_with(f"Authorization: {scheme} {base64.b64encode(raw).decode()}")


def test_basic_credentials_are_decoded() -> None:
    assert basic_credentials(basic(b"source:hackme")) == Credentials("source", "hackme")


def test_basic_scheme_name_ignores_case() -> None:
    assert basic_credentials(basic(b"source:hackme", "basic")) == Credentials("source", "hackme")


def test_password_keeps_colons_after_the_first() -> None:
    assert basic_credentials(basic(b"admin:a:b:c")) == Credentials("admin", "a:b:c")


def test_empty_user_and_password_are_credentials() -> None:
    assert basic_credentials(basic(b":")) == Credentials("", "")


def test_utf8_credentials_are_decoded() -> None:
    assert basic_credentials(basic("j\u00fcrgen:p\u00e4ss".encode())) == Credentials("j\u00fcrgen", "p\u00e4ss")


def test_basic_without_colon_is_no_credentials() -> None:
    assert basic_credentials(basic(b"sourcehackme")) is None


@pytest.mark.parametrize("token", ["not base64!", "c291cmNl=OmhhY2ttZQ", "c29", "\u00e9\u00e9\u00e9\u00e9"])
def test_bad_base64_is_no_credentials(token: str) -> None:
    assert basic_credentials(request_with(f"Authorization: Basic {token}")) is None


def test_other_scheme_is_no_credentials() -> None:
    assert basic_credentials(basic(b"source:hackme", "Digest")) is None


def test_missing_authorization_is_no_credentials() -> None:
    assert basic_credentials(request_with("ice-password: hackme")) is None


def test_credentials_repr_hides_the_password() -> None:
    assert "hackme" not in repr(Credentials("source", "hackme"))


def test_matching_credentials_match() -> None:
    assert credentials_match(Credentials("source", "hackme"), "source", "hackme")


@pytest.mark.parametrize(
    "given",
    [Credentials("source", "hackm"), Credentials("source", "hackme "), Credentials("Source", "hackme"),
     Credentials("admin", "hackme"), Credentials("", ""), None],
)
def test_other_credentials_do_not_match(given: Credentials | None) -> None:
    assert not credentials_match(given, "source", "hackme")


def test_nothing_matches_an_unset_password() -> None:
    assert not credentials_match(Credentials("source", ""), "source", None)


def test_non_ascii_credentials_compare_as_utf8() -> None:
    given = basic_credentials(basic("source:p\u00e4ss".encode()))
    assert credentials_match(given, "source", "p\u00e4ss")


def test_non_utf8_password_bytes_compare_without_error() -> None:
    given = basic_credentials(basic(b"source:p\xe4ss"))
    assert not credentials_match(given, "source", "p\u00e4ss")


# --- refused heads still say what they were (for the access log) ----------------------


def refused(raw: bytes) -> BadHead:
    with pytest.raises(BadHead) as caught:
        HeadParser().feed(raw)
    return caught.value


def test_a_refused_head_carries_its_request_line_and_well_formed_headers() -> None:
    error = refused(b"GET /\xff HTTP/1.0\r\nUser-Agent: a\x01b\r\nX-Ok: 1\r\n\r\n")
    assert (error.message, error.status) == ("control character in request header", 400)
    assert error.request == Request(method="GET", target="/\udcff", path="/\udcff", query=(),
                                    protocol="HTTP", version="1.0",
                                    headers=(("user-agent", "a\x01b"), ("x-ok", "1")))


def test_an_oversized_head_carries_its_first_line() -> None:
    error = refused(b"GET /big?x=1 HTTP/1.1\r\nX-Pad: " + b"p" * MAX_HEAD_BYTES)
    assert error.message == "request header too large"
    assert error.request is not None and error.request.target == "/big?x=1"
    assert error.request.query == (("x", "1"),)


def test_an_oversized_first_line_leaves_nothing_to_log() -> None:
    assert refused(b"GET /" + b"a" * MAX_HEAD_BYTES).request is None


@pytest.mark.parametrize(("line", "method", "target", "version"), [
    (b"garbage", "GARBAGE", "", ""),
    (b"get /x", "GET", "/x", ""),
    (b"GET HTTP/1.0", "GET", "", "1.0"),
    (b"GET /x HTTP/1.0 extra", "GET", "/x HTTP/1.0 extra", ""),
    (b"GET /a b/c  HTTP/1.0 ", "GET", "/a b/c", "1.0"),
    (b"\xff\xfe /\x00 ICY", "\udcff\udcfe", "/\x00 ICY", ""),
])
def test_lenient_request_reads_any_request_line(
        line: bytes, method: str, target: str, version: str) -> None:
    request = lenient_request(line)
    assert request is not None
    assert (request.method, request.target, request.version) == (method, target, version)


def test_lenient_request_of_an_empty_head_is_none() -> None:
    assert lenient_request(b"") is None and lenient_request(b" \t ") is None


def test_lenient_request_never_raises() -> None:
    rng = random.Random(11)
    for _ in range(3000):
        lenient_request(bytes(rng.randrange(256) for _ in range(rng.randrange(60))))
