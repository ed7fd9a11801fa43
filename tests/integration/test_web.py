"""The web side through a real fanout with two workers: playlists of the public mounts,
the status page and its live events, and the admin UI's pages and forms (issue 11).

An `EventStream` is a real client of `/status-events`: it reads the stream in a thread
and parses the events as the HTML standard says a browser does."""
from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from urllib.parse import quote

import pytest

from fanout.protocol.admin_ui import ADMIN_HEADERS
from fanout.protocol.sse import KEEPALIVE_SECONDS
from tests.integration.test_redirect import redirecting_slave_xml
from tests.support.admin import ADMIN, get
from tests.support.clients import FillSource, Listener, raw_request
from tests.support.htmltree import parse_html
from tests.support.server import icecast_xml, start_fanout
from tests.support.waiting import wait_for

MOUNTS = ("<mount><mount-name>/hidden.mp3</mount-name><hidden>1</hidden></mount>"
          "<mount><mount-name>/live.mp3</mount-name><stream-name>Live &lt;Show&gt;</stream-name>"
          "<genre>Talk</genre></mount>")
SAME_SITE = {"Sec-Fetch-Site": "same-origin"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_fanout(icecast_xml(mounts=MOUNTS), tmp_path_factory.mktemp("web"), workers=2)
    sources = [FillSource(srv, mount, "audio/mpeg") for mount in ("/live.mp3", "/hidden.mp3")]
    wait_for(lambda: public_mounts(srv) == ["/live.mp3"], 5, "the public mount listed")
    yield srv
    for source in sources:
        source.close()
    assert srv.stop() == 0, srv.output()


def public_mounts(server) -> list[str]:
    found = json.loads(get(server, "/status-json.xsl", None).body)["icestats"].get("source", [])
    return [s["listenurl"].split(str(server.port), 1)[1]
            for s in (found if isinstance(found, list) else [found])]


def request(server, method: str, target: str, *, headers: dict[str, str] | None = None,
            body: bytes | None = None) -> tuple[str, dict[str, str], bytes]:
    """(status line, headers, body) of one request with the admin's credentials."""
    fields = {"Host": f"{server.host}:{server.port}", "Authorization": ADMIN, **(headers or {})}
    lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in fields.items())]
    if body is not None:
        lines += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}"]
    raw = raw_request(server.host, server.port, ("\r\n".join(lines) + "\r\n\r\n").encode()
                      + (body or b""))
    head, _, rest = raw.partition(b"\r\n\r\n")
    status, *fields = head.decode("latin-1").split("\r\n")
    return status, {k.lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}, rest


def title_of(server, mount: str) -> str | None:
    source = get(server, f"/admin/stats?mount={mount}").xml().find("source")
    return None if source is None else source.findtext("title")


# --- playlists ----------------------------------------------------------------------------


def test_a_public_mounts_m3u_and_xspf_are_icecasts_playlists(server):
    m3u = get(server, "/live.mp3.m3u", None)
    assert (m3u.status, m3u.headers["content-type"]) == (200, "audio/x-mpegurl")
    assert m3u.body == f"http://{server.host}:{server.port}/live.mp3\r\n".encode()
    xspf = get(server, "/live.mp3.xspf", None)
    assert (xspf.status, xspf.headers["content-type"]) == (200, "application/xspf+xml; charset=UTF-8")
    track = xspf.xml().find("{http://xspf.org/ns/0/}trackList/{http://xspf.org/ns/0/}track")
    assert track.findtext("{http://xspf.org/ns/0/}location") == f"{server.url}/live.mp3"
    assert "Stream Title: Live <Show>" in track.findtext("{http://xspf.org/ns/0/}annotation")


def test_an_m3u_points_where_the_listener_reached_the_server(server):
    _, _, body = request(server, "GET", "/live.mp3.m3u", headers={"Host": "radio.example:8443"})
    assert body == b"http://radio.example:8443/live.mp3\r\n"


def test_hidden_and_absent_mounts_have_no_playlist_alike(server):
    hidden, absent = get(server, "/hidden.mp3.m3u", None), get(server, "/absent.mp3.xspf", None)
    assert hidden.status == absent.status == 404 and hidden.body == absent.body


def test_a_mount_named_like_a_playlist_is_streamed(server):
    source = FillSource(server, "/show.m3u", "audio/mpeg")
    try:
        listener = Listener(server.host, server.port, "/show.m3u").start()
        assert listener.head.startswith(b"HTTP/1.0 200 OK") and b"audio/mpeg" in listener.head
        listener.close()
    finally:
        source.close()


# --- the status page and its events --------------------------------------------------------


def test_the_status_page_shows_each_public_mount_with_its_links(server):
    page = get(server, "/", None)
    assert page.status == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    html = parse_html(page.body)
    assert html.find("html").attrs["data-events"] == "/status-events"
    rows = html.find_all("tr", cls="mount")
    assert [row.attrs["data-mount"] for row in rows] == ["/live.mp3"]
    (row,) = rows
    assert row.find(cls="server_name").text() == "Live <Show>"
    assert row.find(cls="genre").text() == "Talk"
    assert (row.find("a", cls="m3u").attrs["href"], row.find("a", cls="xspf").attrs["href"]) == (
        "/live.mp3.m3u", "/live.mp3.xspf")
    assert row.find("audio").attrs["src"] == "/live.mp3"
    assert row.find("time", cls="stream_start").attrs["datetime"]
    assert html.find("footer").text().startswith("fanout ")


@dataclass
class EventStream:
    """A client of /status-events reading its events in a thread."""

    server: object
    head: bytes = b""
    events: list[tuple[str, dict]] = field(default_factory=list)
    comments: int = 0
    closed: threading.Event = field(default_factory=threading.Event)

    def open(self) -> "EventStream":
        self.sock = socket.create_connection((self.server.host, self.server.port), timeout=30)
        self.sock.sendall(b"GET /status-events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream"
                          b"\r\n\r\n")
        threading.Thread(target=self._read, daemon=True).start()
        wait_for(lambda: self.head or self.closed.is_set(), 10, "the events' head")
        return self

    def _read(self) -> None:
        buffer = b""
        try:
            while chunk := self.sock.recv(65536):
                buffer += chunk
                if not self.head and b"\r\n\r\n" in buffer:
                    self.head, _, buffer = buffer.partition(b"\r\n\r\n")
                while self.head and b"\n\n" in buffer:
                    block, _, buffer = buffer.partition(b"\n\n")
                    self._dispatch(block.decode("utf-8"))
        except OSError:
            pass
        finally:
            self.closed.set()

    def _dispatch(self, block: str) -> None:
        kind, data = "message", []
        for line in block.split("\n"):
            name, _, value = line.partition(":")
            if name == "":
                self.comments += 1
            elif name == "event":
                kind = value.strip()
            elif name == "data":
                data.append(value[1:] if value.startswith(" ") else value)
        if data:
            self.events.append((kind, json.loads("\n".join(data))))

    def last(self, path: str) -> dict | None:
        """The newest mount event of `path` (None if none, or if a gone event came after)."""
        for kind, payload in reversed(self.events):
            if payload.get("path") == path:
                return payload if kind == "mount" else None
        return None

    def close(self) -> None:
        self.sock.close()


def test_events_open_with_every_public_mount_and_never_a_hidden_one(server):
    stream = EventStream(server).open()
    assert stream.head.startswith(b"HTTP/1.0 200 OK\r\n")
    assert b"Content-Type: text/event-stream; charset=utf-8\r\n" in stream.head
    wait_for(lambda: stream.last("/live.mp3"), 10, "the opening snapshot")
    assert stream.last("/live.mp3")["server_name"] == "Live <Show>"
    assert not any(p.get("path") == "/hidden.mp3" for _, p in stream.events)
    stream.close()


def test_events_follow_a_title_a_listener_and_a_mount_coming_and_going(server):
    stream = EventStream(server).open()
    wait_for(lambda: stream.last("/live.mp3"), 10, "the opening snapshot")
    get(server, "/admin/metadata?mount=/live.mp3&mode=updinfo&song=Now%20live")
    wait_for(lambda: stream.last("/live.mp3")["title"] == "Now live", 5, "the new title")
    listener = Listener(server.host, server.port, "/live.mp3").start()
    wait_for(lambda: stream.last("/live.mp3")["listeners"] == "1", 5, "the listener counted")
    listener.close()
    wait_for(lambda: stream.last("/live.mp3")["listeners"] == "0", 5, "the listener gone")
    newcomer = FillSource(server, "/new.mp3", "audio/mpeg")
    wait_for(lambda: stream.last("/new.mp3"), 5, "the new mount's row")
    newcomer.close()
    wait_for(lambda: ("gone", {"mount": "/new.mp3", "path": "/new.mp3"}) in stream.events, 10,
             "the gone event")
    hidden_title = "/admin/metadata?mount=/hidden.mp3&mode=updinfo&song=secret"
    assert get(server, hidden_title).status == 200
    assert not any(p.get("path") == "/hidden.mp3" for _, p in stream.events)
    stream.close()


def test_an_event_stream_holds_a_client_slot(tmp_path):
    server = start_fanout(icecast_xml(limits="<clients>2</clients>"), tmp_path, workers=1)
    try:
        streams = [EventStream(server).open() for _ in range(2)]
        assert all(s.head.startswith(b"HTTP/1.0 200 OK") for s in streams)
        refused = get(server, "/status-events", None)
        assert (refused.status, refused.body) == (403, b"Icecast connection limit reached")
        for stream in streams:
            stream.close()
    finally:
        server.stop()


# --- the admin UI -------------------------------------------------------------------------


def test_admin_in_a_browser_is_the_overview_page(server):
    status, headers, body = request(server, "GET", "/admin/")
    assert status == "HTTP/1.0 200 OK" and headers["content-type"] == "text/html; charset=utf-8"
    assert all(headers[name.lower()] == value for name, value in ADMIN_HEADERS)
    html = parse_html(body)
    rows = {row.attrs["data-mount"]: row for row in html.find_all("tr", cls="mount")}
    assert sorted(rows) == ["/hidden.mp3", "/live.mp3"]
    assert rows["/hidden.mp3"].find(cls="badge").text() == "hidden"
    assert html.find(id="relays") and html.find(id="slaves")


def test_admin_pages_ask_a_browser_for_credentials(server):
    answer = get(server, "/admin/", authorization=None)
    assert answer.status == 401
    assert answer.headers["www-authenticate"] == 'Basic realm="Icecast2 Server"'


def test_the_mount_page_lists_its_listeners_with_a_kick_button_that_kicks(server):
    listener = Listener(server.host, server.port, "/live.mp3").start()
    _, _, body = request(server, "GET", "/admin/listclients.xsl?mount=/live.mp3")
    kicks = {row.attrs["data-id"]: row.find("form").attrs["action"]
             for row in parse_html(body).find_all("tr", cls="listener")}
    assert len(kicks) == 1
    (client_id, action), = kicks.items()
    assert action == f"/admin/killclient.xsl?mount=/live.mp3&id={client_id}"
    status, headers, page = request(server, "POST", action, headers=SAME_SITE, body=b"")
    assert status == "HTTP/1.0 200 OK"
    assert parse_html(page).find("p", cls="result").text() == f"Client {client_id} removed"
    assert listener.closed.wait(5)


def test_the_title_form_sets_the_title(server):
    action = "/admin/metadata.xsl?mount=/live.mp3&mode=updinfo&charset=UTF-8"
    status, _, page = request(server, "POST", action, headers=SAME_SITE,
                              body=b"song=" + quote("Café & co").encode())
    assert status == "HTTP/1.0 200 OK"
    assert parse_html(page).find("p", cls="result").text() == "Metadata update successful"
    assert parse_html(page).find("a", cls="back").attrs["href"] == (
        "/admin/listclients.xsl?mount=/live.mp3")
    wait_for(lambda: title_of(server, "/live.mp3") == "Café & co", 5, "the title in the stats")


def test_the_move_form_moves_the_listeners(server):
    destination = FillSource(server, "/other.mp3", "audio/mpeg")
    try:
        listener = Listener(server.host, server.port, "/live.mp3").start()
        action = "/admin/moveclients.xsl?mount=/live.mp3&destination=/other.mp3"
        status, _, page = request(server, "POST", action, headers=SAME_SITE, body=b"")
        assert parse_html(page).find("p", cls="result").text() == (
            "Clients moved from /live.mp3 to /other.mp3")
        wait_for(lambda: b"\xaa" * 4096 in bytes(listener.body[-8192:]), 5, "the other stream")
        clients = get(server, "/admin/listclients?mount=/other.mp3").xml()
        assert clients.findtext("source/Listeners") == "1"
        listener.close()
    finally:
        destination.close()


def test_the_kill_source_form_ends_the_mount_and_leads_back_to_the_overview(server):
    source = FillSource(server, "/doomed.mp3", "audio/mpeg")
    wait_for(lambda: "/doomed.mp3" in public_mounts(server), 5, "the mount")
    status, _, page = request(server, "POST", "/admin/killsource.xsl?mount=/doomed.mp3",
                              headers=SAME_SITE, body=b"")
    html = parse_html(page)
    assert (html.find("p", cls="result").text(), html.find("a", cls="back").attrs["href"]) == (
        "Source Removed", "/admin/")
    wait_for(lambda: "/doomed.mp3" not in public_mounts(server), 5, "the mount gone")
    source.close()


def test_a_post_anywhere_but_admin_is_refused_as_icecast_refuses_it(server):
    status, _, _ = request(server, "POST", "/live.mp3", body=b"")
    assert status == "HTTP/1.0 400 Bad Request"


def test_the_xml_commands_answer_as_before_by_get(server):
    answer = get(server, "/admin/metadata?mount=/live.mp3&mode=updinfo&song=x")
    assert answer.xml().findtext("message") == "Metadata update successful"
    assert KEEPALIVE_SECONDS < 60  # proxies' usual idle timeout: see fanout/protocol/sse.py


def test_the_overview_shows_a_slaves_relays_and_a_masters_slave_table(tmp_path):
    for side in ("master", "slave"):
        (tmp_path / side).mkdir()
    master = start_fanout(icecast_xml(extra="<max-redirect-slaves>2</max-redirect-slaves>"),
                          tmp_path / "master", workers=1)
    slave = None
    source = FillSource(master, "/relayed.mp3", "audio/mpeg")
    try:
        slave = start_fanout(redirecting_slave_xml(master), tmp_path / "slave", workers=1)
        registered = f"redirect slave 127.0.0.1:{slave.port} registered"
        wait_for(lambda: registered in master.output(), 10, "the slave's registration")
        wait_for(lambda: "/relayed.mp3" in public_mounts(slave), 10, "the relay on the slave")
        _, _, body = request(slave, "GET", "/admin/")
        (relay,) = parse_html(body).find_all("tr", cls="relay")
        cells = [cell.text() for cell in relay.find_all("td")]
        assert cells[0] == "/relayed.mp3" and cells[2] == "streaming"
        upstream = cells[1]  # the master's URL of the mount (KH's /admin/streams?mount=…)
        assert upstream.startswith(f"http://127.0.0.1:{master.port}/")
        assert upstream.endswith("/relayed.mp3")
        _, _, body = request(master, "GET", "/admin/")
        (row,) = parse_html(body).find_all("tr", cls="slave")
        cells = [cell.text() for cell in row.find_all("td")]
        assert cells[:2] == ["127.0.0.1", str(slave.port)] and cells[2].startswith("in ")
    finally:
        source.close()
        if slave is not None:
            slave.stop()
        master.stop()
