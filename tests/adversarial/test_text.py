"""Threat: text that is not UTF-8 or holds control characters (issue 9, items 4, 6, 7).

Older encoders send `Ice-Name: caf\\xe9` in Latin-1; a source may name its mount with any
bytes (`/%ff%fd.mp3`); a client may put `\\xff` in its request target or User-Agent; an
admin title may carry CR LF. None of it may break an answer, a log line or a relay:

- display outputs (`/`, `/status.xsl`, `/status-json.xsl`, `/metrics`, `/admin/stats`)
  answer 200 with valid UTF-8, showing non-UTF-8 text as Latin-1;
- byte formats (listener heads, ICY blocks, `/admin/streamlist.txt`, `/admin/streams`)
  carry the exact bytes, so a slave relays `/%ff%fd.mp3` under exactly that name;
- log lines escape what they quote: every request whose head arrived has its access.log
  line, and no value can start or forge an error.log line;
- `/admin/metadata` answers any `charset` and any title as Icecast does.

Every test also checks that the server is up and the Bystander's listeners keep a
byte-exact stream.
"""
from __future__ import annotations

import json
import re
import socket
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_metadata import IcyStream, stream_title
from tests.support.admin import ADMIN, get
from tests.support.bystander import Bystander
from tests.support.clients import Feeding, Listener, basic, locate_in_pattern, pattern, raw_request, read_head
from tests.support.server import (
    RELAY_PASSWORD, SOURCE_PASSWORD, FanoutProcess, icecast_xml, start_fanout,
)
from tests.support.waiting import wait_for

MOUNT_BYTES = b"/\xff\xfd.mp3"  # the mount as the source sent it, percent-decoded
MOUNT_URL = "/%FF%FD.mp3"  # the same bytes as a URL path
MOUNT_SHOWN = "/ÿý.mp3"  # and as display formats show them (Latin-1)
RELAY = basic("relay", RELAY_PASSWORD)
UPDATED = (b'<?xml version="1.0"?>\n<iceresponse><message>Metadata update successful</message>'
           b"<return>1</return></iceresponse>\n")
ERROR_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] (\w+) (\w+) ([\w.]+): (.*)$")
ACCESS_LINE = re.compile(r'^127\.0\.0\.1 - - \[[^\]]+\] "(.*)" (\d{3}) (\d+) "(.*)" "(.*)" (\d+)$')
FORGED = "[2026-01-01 00:00:00] ERROR supervisor fanout: forged"


def logging_xml(logdir: Path, extra: str = "") -> str:
    return icecast_xml(sources=16, extra=f"""<paths><logdir>{logdir}</logdir></paths>
  <logging><accesslog>access.log</accesslog><errorlog>error.log</errorlog>
  <loglevel>3</loglevel></logging>{extra}""")


@pytest.fixture(scope="module")
def logdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("text-logs")


@pytest.fixture(scope="module")
def server(logdir):
    srv = start_fanout(logging_xml(logdir), logdir, workers=2)
    yield srv
    assert srv.stop() == 0, srv.output()


@pytest.fixture(scope="module")
def bystander(server):
    with Bystander(server) as party:
        yield party


class RawSource:
    """A source whose head is raw bytes (a Latin-1 Ice-Name), streaming the test pattern
    from a thread until closed."""

    def __init__(self, server: FanoutProcess, target: bytes, headers: bytes) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=10)
        self.sock.sendall(b"PUT " + target + b" HTTP/1.1\r\nAuthorization: "
                          + basic("source", SOURCE_PASSWORD).encode()
                          + b"\r\nContent-Type: audio/mpeg\r\n" + headers + b"\r\n")
        assert read_head(self.sock)[0] == b"HTTP/1.0 200 OK\r\n\r\n"
        self.sent = 0
        self.feeding = Feeding(self._write, 0.01)

    def _write(self) -> None:
        self.sock.sendall(pattern(self.sent, 4096))
        self.sent += 4096

    def close(self) -> None:
        self.feeding.close()
        self.sock.close()


def serves(server: FanoutProcess, path: str) -> bool:
    probe = Listener(server.host, server.port, path).start()
    probe.close()
    return probe.head.startswith(b"HTTP/1.0 200")


@pytest.fixture(scope="module")
def latin1_source(server, bystander):
    """The hostile source: mount `/%ff%fd.mp3`, Ice-Name `caf\\xe9`, Latin-1 title `\\xe9t\\xe9`."""
    source = RawSource(server, b"/%ff%fd.mp3", b"Ice-Name: caf\xe9\r\nIce-Genre: \xe9t\xe9\r\n")
    wait_for(lambda: serves(server, MOUNT_URL), 5, "the non-UTF-8 mount to serve")
    # Its title; the tests check where it shows (main once answered 400 here: no such mount).
    raw_request(server.host, server.port, b"GET /admin/metadata?mount=/%ff%fd.mp3&mode=updinfo"
                b"&song=%e9t%e9 HTTP/1.0\r\nAuthorization: " + ADMIN.encode() + b"\r\n\r\n")
    yield source
    source.close()


def lines(path: Path) -> list[str]:
    return path.read_text("utf-8").splitlines() if path.exists() else []


def wait_line(path: Path, regex: str, what: str) -> re.Match[str]:
    """The first line of `path` matching `regex` as a whole (every line must be UTF-8)."""
    compiled = re.compile(regex)
    return wait_for(lambda: next((m for m in map(compiled.fullmatch, lines(path)) if m), None),
                    5, what)


def assert_healthy(server: FanoutProcess, bystander: Bystander) -> None:
    assert server.proc.poll() is None, server.output()
    assert get(server, "/health", authorization=None).status == 200
    bystander.assert_untouched()


# --- display formats: 200, valid, Latin-1 ------------------------------------------------


# Elements that hold one field inside a status page cell (the name is a link, the genre a div).
FIELD_TAGS = ("a", "div", "span")


class StatusRows(HTMLParser):
    """The status page's mount rows: data-mount -> {cell class: text}, and the links."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, str]] = {}
        self.links: list[str] = []
        self._row: dict[str, str] | None = None
        self._cell: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "tr" and values.get("data-mount"):
            self._row = self.rows.setdefault(values["data-mount"] or "", {})
        elif tag == "td" or (tag in FIELD_TAGS and values.get("class")):  # a cell, or a field in one
            self._cell = values.get("class")
        if tag == "a":
            self.links.append(values.get("href") or "")

    def handle_data(self, data: str) -> None:
        if self._row is not None and self._cell:
            self._row[self._cell] = self._row.get(self._cell, "") + data

    def handle_endtag(self, tag: str) -> None:
        self._cell = None if tag == "td" or tag in FIELD_TAGS else self._cell
        self._row = None if tag == "tr" else self._row


@pytest.mark.parametrize("path", ["/", "/status.xsl"])
def test_the_status_page_shows_a_latin1_source_as_valid_html(server, bystander, latin1_source,
                                                             path):
    answer = get(server, path, authorization=None)
    assert answer.status == 200 and answer.headers["content-type"] == "text/html; charset=utf-8"
    page = StatusRows()
    page.feed(answer.body.decode("utf-8"))  # strict: the page is valid UTF-8
    assert page.rows[MOUNT_SHOWN]["server_name"] == "café"
    assert page.rows[MOUNT_SHOWN]["genre"] == "été" and page.rows[MOUNT_SHOWN]["title"] == "été"
    assert MOUNT_URL in page.links
    assert serves(server, MOUNT_URL)
    assert_healthy(server, bystander)


def test_status_json_is_valid_json_with_latin1_text(server, bystander, latin1_source):
    answer = get(server, "/status-json.xsl", authorization=None)
    assert answer.status == 200 and answer.headers["content-type"] == "application/json; charset=UTF-8"
    sources = json.loads(answer.body)["icestats"]["source"]  # bytes: strict UTF-8 JSON
    (mine,) = [s for s in sources if s["listenurl"].endswith(MOUNT_URL)]
    assert mine["listenurl"] == f"http://127.0.0.1:{server.port}{MOUNT_URL}"
    assert (mine["server_name"], mine["genre"], mine["title"]) == ("café", "été", "été")
    assert_healthy(server, bystander)


def test_metrics_parse_with_the_latin1_mount_as_a_label(server, bystander, latin1_source):
    answer = get(server, "/metrics", authorization=None)
    assert answer.status == 200
    families = {f.name: f for f in text_string_to_metric_families(answer.body.decode("utf-8"))}
    mounts = {s.labels["mount"] for s in families["fanout_mount_listeners"].samples}
    assert MOUNT_SHOWN in mounts and "/bystander" in mounts
    assert_healthy(server, bystander)


def test_admin_stats_is_valid_xml_with_latin1_text(server, bystander, latin1_source):
    answer = get(server, "/admin/stats")
    assert answer.status == 200
    source = ET.fromstring(answer.body).find(f"source[@mount='{MOUNT_SHOWN}']")
    assert source is not None
    assert (source.findtext("server_name"), source.findtext("title")) == ("café", "été")
    assert_healthy(server, bystander)


# --- byte formats: the exact bytes ---------------------------------------------------------


def test_listeners_get_the_source_header_and_title_bytes_unchanged(server, bystander,
                                                                   latin1_source):
    listener = Listener(server.host, server.port, MOUNT_URL, icy=True).start()
    try:
        assert b"\r\nicy-name:caf\xe9\r\n" in listener.head
        assert b"\r\nicy-genre:\xe9t\xe9\r\n" in listener.head
        wait_for(lambda: len(listener.body) > 16000 + 32, 5, "the first ICY block")
        assert listener.body[16000:16000 + 33] == stream_title(b"\xe9t\xe9")
    finally:
        listener.close()
    assert_healthy(server, bystander)


def test_the_stream_lists_carry_the_mounts_exact_bytes(server, bystander, latin1_source):
    listed = get(server, "/admin/streamlist.txt", RELAY)
    assert listed.status == 200
    assert (b"\r\n" + MOUNT_BYTES + b"\r\n") in b"\r\n" + listed.body  # a whole line
    streams = get(server, "/admin/streams", RELAY)
    assert streams.status == 200
    assert b"/admin/streams?mount=" + MOUNT_BYTES + b"\r\n" in streams.body
    assert_healthy(server, bystander)


def test_a_slave_relays_the_non_utf8_mount_under_its_exact_bytes(server, bystander,
                                                                 latin1_source, tmp_path):
    slave = start_fanout(icecast_xml(extra=f"""
  <master-server>{server.host}</master-server>
  <master-server-port>{server.port}</master-server-port>
  <master-password>{RELAY_PASSWORD}</master-password>
  <master-update-interval>1</master-update-interval>"""), tmp_path, workers=2)
    try:
        def relayed() -> Listener | None:
            listener = Listener(slave.host, slave.port, MOUNT_URL).start()
            if listener.head.startswith(b"HTTP/1.0 200"):
                return listener
            listener.close()
            return None

        listener = wait_for(relayed, 10, "the slave to relay the non-UTF-8 mount")
        wait_for(lambda: len(listener.body) > 64 * 1024, 10, "64 KiB through the slave")
        locate_in_pattern(bytes(listener.body))  # the master's stream, byte-exact
        assert b"\r\nicy-name:caf\xe9\r\n" in listener.head
        assert MOUNT_BYTES + b"\r\n" in get(slave, "/admin/streamlist.txt", RELAY).body
        listener.close()
    finally:
        assert slave.stop() == 0, slave.output()
    assert_healthy(server, bystander)


# --- logs: every request its line, no forged line --------------------------------------


def test_a_non_utf8_target_and_user_agent_get_an_escaped_access_line(server, bystander, logdir):
    answer = raw_request(server.host, server.port,
                         b"GET /\xff HTTP/1.0\r\nUser-Agent: \xff\r\nReferer: \xfe\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 404 File Not Found\r\n")
    line = wait_line(logdir / "access.log", r'127\.0\.0\.1 - - \[[^\]]+\] "GET /\\xff HTTP/1\.0" '
                     r'404 \d+ "\\xfe" "\\xff" \d+', "the access line of the \\xff request")
    assert line
    assert_healthy(server, bystander)


def test_a_killsource_with_non_utf8_bytes_is_logged(server, bystander, logdir):
    victim = RawSource(server, b"/victim", b"")
    try:
        wait_for(lambda: serves(server, "/victim"), 5, "/victim to serve")
        answer = raw_request(server.host, server.port,
                             b"GET /admin/killsource?mount=/victim&why=\xff HTTP/1.0\r\n"
                             b"Authorization: " + ADMIN.encode() + b"\r\nUser-Agent: \xff\r\n\r\n")
        assert answer.endswith(b"<iceresponse><message>Source Removed</message>"
                               b"<return>1</return></iceresponse>\n")
    finally:
        victim.close()
    wait_line(logdir / "access.log", r'127\.0\.0\.1 - - \[[^\]]+\] "GET /admin/killsource\?'
              r'mount=/victim&why=\\xff HTTP/1\.0" 200 \d+ "-" "\\xff" \d+', "the killsource line")
    wait_line(logdir / "error.log", r"\[[^\]]+\] INFO worker[01] fanout\.admin: 127\.0\.0\.1: "
              r"source on /victim killed", "the error.log line of the kill")
    assert_healthy(server, bystander)


def test_a_head_refused_for_a_control_character_still_gets_its_access_line(server, bystander,
                                                                           logdir):
    answer = raw_request(server.host, server.port,
                         b"GET /ctl HTTP/1.0\r\nUser-Agent: a\x01b\"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 400 Bad Request\r\n")
    wait_line(logdir / "access.log", r'127\.0\.0\.1 - - \[[^\]]+\] "GET /ctl HTTP/1\.0" 400 \d+ '
              r'"-" "a\\x01b\\x22" \d+', "the access line of the refused head")
    wait_line(logdir / "error.log", r"\[[^\]]+\] WARNING worker[01] fanout\.client: 127\.0\.0\.1: "
              r"control character in request header \(400\)", "the error.log line")
    assert_healthy(server, bystander)


def test_a_title_with_cr_lf_is_served_raw_but_cannot_forge_a_log_line(server, bystander, logdir):
    stream = IcyStream(server, "/crlf")
    try:
        song = "a\r\n" + FORGED
        answer = get(server, "/admin/metadata?mount=/crlf&mode=updinfo&song="
                     + song.replace("\r", "%0D").replace("\n", "%0A").replace(" ", "%20"))
        assert (answer.status, answer.body) == (200, UPDATED)
        assert stream.next_change() == stream_title(song.encode())  # as Icecast: raw
    finally:
        stream.close()
    wait_line(logdir / "error.log", r"\[[^\]]+\] INFO worker[01] fanout\.admin: 127\.0\.0\.1: "
              r"metadata on /crlf: a\\x0d\\x0a" + re.escape(FORGED), "the escaped title line")
    assert not [line for line in lines(logdir / "error.log") if not ERROR_LINE.fullmatch(line)
                and not line.startswith("  ")], "a line that is no record and no traceback"
    assert not any(line.startswith("[2026-01-01") for line in lines(logdir / "error.log"))
    assert_healthy(server, bystander)


# --- /admin/metadata: any charset, any length, Icecast's answers -------------------------


@pytest.mark.parametrize("number, charset, song, received", [
    (0, "idna", "xn--abc", b"xn--abc"),  # the IDNA codec raises on it: main answered 500
    (1, "no-such-charset", "ab%ff", b"ab\xff"),
    (2, "rot13", "ab%ff", b"ab\xff"),  # a Python codec, but no charset
    (3, "%ff%00", "ab%ff", b"ab\xff"),
    (4, "UTF-16", "ab%ff", b"ab\xff"),  # a charset, but three bytes are no UTF-16
])
def test_any_charset_is_answered_as_icecast_and_leaves_the_bytes(server, bystander, number,
                                                                 charset, song, received):
    stream = IcyStream(server, f"/charset{number}")
    try:
        answer = raw_request(server.host, server.port, (
            f"GET /admin/metadata?mount={stream.mount}&mode=updinfo&song={song}&charset="
            f"{charset} HTTP/1.0\r\nAuthorization: {ADMIN}\r\n\r\n").encode())
        assert answer.startswith(b"HTTP/1.0 200 OK\r\n") and answer.endswith(UPDATED), answer
        assert stream.next_change() == stream_title(received)  # unconverted: as received
    finally:
        stream.close()
    assert_healthy(server, bystander)


def test_an_over_long_title_is_refused_with_a_warning_and_the_old_one_stays(server, bystander,
                                                                          logdir):
    stream = IcyStream(server, "/long")
    try:
        song = "x" * (255 * 16 - len("StreamTitle='';"))  # one byte over the block
        answer = get(server, f"/admin/metadata?mount=/long&mode=updinfo&song={song}")
        assert (answer.status, answer.body) == (200, UPDATED)  # 2.4.4 answers success
        assert stream.next_block() == b"\x00" and stream.next_block() == b"\x00"
    finally:
        stream.close()
    wait_line(logdir / "error.log", r"\[[^\]]+\] WARNING worker[01] fanout\.admin: 127\.0\.0\.1: "
              r"metadata on /long refused: 4080 bytes, an ICY block holds 4079",
              "the refusal's warning")
    assert_healthy(server, bystander)
