"""The admin UI (fanout.protocol.admin_ui): routing of the `.xsl` pages, the cross-site
rule, form bodies, and every page parsed strictly."""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from fanout.protocol.admin_ui import (
    ADMIN_HEADERS, CROSS_SITE_MESSAGE, MAX_FORM_BYTES, MOUNT_PAGE, OVERVIEW, RESULT, SlaveRow,
    admin_page, changes_state, check_same_origin, duration_text, is_cross_site, parse_form,
    render_admin_mount, render_admin_overview, render_admin_result, slave_rows,
)
from fanout.protocol.errors import ProtocolError
from fanout.protocol.http import parse_head
from fanout.protocol.icy import MAX_META_TEXT
from fanout.protocol.stats import (
    MountFigures, MountSettings, RelayFigures, ServerFigures, global_stats, mount_stats,
)
from fanout.protocol.stats_xml import ListedClient
from fanout.protocol.text import from_wire, to_wire
from fanout.redirects import Target
from tests.support.htmltree import Element, parse_html

HOSTILE = '<script>alert("x")</script> & \'co\''
BAD = from_wire(b"/caf\xe9 &=+#.mp3")  # not UTF-8, and every query delimiter in it
SERVER = global_stats(ServerFigures(admin="a@b", host="radio.example", location="Earth",
                                    server_id="Icecast 2.4.4 (fanout 1)", server_start=1e9,
                                    port=8000, clients=4, listeners=3, sources=2,
                                    connections=9, source_client_connections=2,
                                    listener_connections=3))


def full_stats(name: str, title: str = "", relay: RelayFigures | None = None,
               headers=()) -> dict[str, str]:
    figures = MountFigures(name=name, content_type="audio/mpeg", headers=headers,
                           source_ip="10.0.0.1", user_agent="enc/1", title=title,
                           stream_start=1_700_000_000.0, listeners=3, listener_peak=5,
                           slow_listeners=0, bytes_read=1, bytes_sent=1,
                           settings=MountSettings(), relay=relay)
    return mount_stats(figures, "radio.example", 8000)


def request(*headers: str, target: str = "/admin/killsource?mount=/a") -> object:
    lines = [f"POST {target} HTTP/1.1", *headers]
    return parse_head(("\r\n".join(lines)).encode())


def query_bytes(url: str) -> dict[str, bytes]:
    """What the admin commands read from a URL's query: exact bytes (admin.raw_query's way)."""
    return parse_form(urlsplit(url).query.encode("latin-1"))


def overview(**changes) -> Element:
    mounts = [("/a", full_stats("/a", "Song A", headers=[("ice-name", "Radio A")])),
              ("/hidden", full_stats("/hidden")),
              ("/relayed", full_stats("/relayed", relay=RelayFigures(
                  "master.example:8000/relayed", "streaming", 2, 12345)))]
    options = {"server": SERVER, "mounts": mounts, "hidden": {"/hidden"},
               "slaves": [SlaveRow("edge1.example", 8001, 25.4, "0.3"),
                          SlaveRow("edge2.example", 8002, None)], **changes}
    return parse_html(render_admin_overview(**options, version="1.2.3"))


# --- which page answers -----------------------------------------------------------------------

@pytest.mark.parametrize("command, params, page", [
    ("", {}, OVERVIEW), ("stats.xsl", {}, OVERVIEW), ("listmounts.xsl", {}, OVERVIEW),
    ("listclients.xsl", {"mount": b"/a"}, MOUNT_PAGE),
    ("updatemetadata.xsl", {"mount": b"/a"}, MOUNT_PAGE),
    ("moveclients.xsl", {"mount": b"/a"}, MOUNT_PAGE),
    ("moveclients.xsl", {"mount": b"/a", "destination": b"/b"}, RESULT),
    ("killsource.xsl", {"mount": b"/a"}, RESULT), ("killclient.xsl", {"id": b"1"}, RESULT),
    ("metadata.xsl", {"mode": b"updinfo"}, RESULT),
    ("stats", {}, None), ("killsource", {}, None), ("listclients", {}, None),
    ("nonsense.xsl", {}, None),
])
def test_each_icecast_xsl_name_has_its_page(command, params, page):
    assert admin_page(command, params) == page


@pytest.mark.parametrize("command, params, acts", [
    ("metadata", {}, True), ("metadata.xsl", {}, True), ("killsource", {}, True),
    ("killclient.xsl", {}, True), ("fallbacks", {}, True),
    ("moveclients", {"destination": b"/b"}, True), ("moveclients", {}, False),
    ("manageauth", {"action": b"add"}, True), ("manageauth", {"action": b"delete"}, True),
    ("manageauth", {"action": b"list"}, False), ("manageauth", {}, False),
    ("stats", {}, False), ("listclients", {}, False), ("listmounts.xsl", {}, False),
    ("streamlist.txt", {}, False), ("", {}, False),
])
def test_commands_that_change_state_are_known(command, params, acts):
    assert changes_state(command, params) is acts


# --- cross-site requests ----------------------------------------------------------------------

@pytest.mark.parametrize("headers, cross", [
    ((), False),  # an encoder, curl, a script: no browser sent it
    (("Sec-Fetch-Site: same-origin",), False),
    (("Sec-Fetch-Site: none",), False),  # typed into the address bar
    (("Sec-Fetch-Site: cross-site",), True),
    (("Sec-Fetch-Site: same-site",), True),  # another service on a sibling host
    (("Host: radio.example:8000", "Origin: http://radio.example:8000"), False),
    (("Host: radio.example", "Origin: http://radio.example"), False),
    (("Host: radio.example:80", "Origin: http://radio.example"), False),
    (("Host: RADIO.example:8000", "Origin: http://radio.EXAMPLE:8000"), False),
    (("Host: radio.example:8000", "Origin: http://evil.example"), True),
    (("Host: radio.example:8000", "Origin: http://radio.example:8001"), True),
    (("Host: radio.example:8000", "Origin: null"), True),  # sandboxed frame, file: page
    (("Origin: http://radio.example:8000",), True),  # no Host to compare with
    (("Host: radio.example:8000", "Referer: http://radio.example:8000/admin/"), False),
    (("Host: radio.example:8000", "Referer: https://evil.example/x"), True),
    # A proxy that rewrites Host: the browser's own verdict decides.
    (("Host: 127.0.0.1:8000", "Origin: https://radio.example", "Sec-Fetch-Site: same-origin"),
     False),
])
def test_cross_site_is_told_from_the_browsers_headers(headers, cross):
    assert is_cross_site(request(*headers)) is cross


def test_a_cross_site_state_change_is_refused_with_403():
    with pytest.raises(ProtocolError) as refused:
        check_same_origin(request("Sec-Fetch-Site: cross-site"), "killsource", {"mount": b"/a"})
    assert (refused.value.status, refused.value.message) == (403, CROSS_SITE_MESSAGE)


def test_a_cross_site_read_and_a_scripts_change_go_through():
    check_same_origin(request("Sec-Fetch-Site: cross-site"), "stats", {})
    check_same_origin(request("Sec-Fetch-Site: cross-site"), "moveclients", {"mount": b"/a"})
    check_same_origin(request(), "metadata", {"mount": b"/a", "mode": b"updinfo"})


# --- form bodies ------------------------------------------------------------------------------

def test_form_values_are_the_exact_bytes_sent_first_one_winning():
    assert parse_form(b"song=caf%E9+%26+co&song=other&empty=&raw=\xff") == {
        "song": b"caf\xe9 & co", "empty": b"", "raw": b"\xff"}


def test_a_form_body_holds_the_longest_title_an_icy_block_takes():
    assert len(b"song=" + b"%41" * MAX_META_TEXT) <= MAX_FORM_BYTES


# --- the overview -----------------------------------------------------------------------------

def test_overview_lists_every_live_mount_marking_hidden_ones():
    rows = overview().find("table", id="mounts").find_all("tr", "mount")
    assert [r.attrs["data-mount"] for r in rows] == ["/a", "/hidden", "/relayed"]
    assert [bool(r.find_all(cls="badge")) for r in rows] == [False, True, False]
    first = rows[0]
    assert first.find(cls="server_name").text() == "Radio A"
    assert first.find("td", "title").text() == "Song A"
    assert first.find(cls="listeners").text() == "3"
    assert "peak 5" in first.find("td", "audience").text()
    assert first.find("td", "mount").find("a").attrs["href"] == "/admin/listclients.xsl?mount=/a"


def test_overview_forms_post_to_the_admin_commands():
    row = overview().find("tr", "mount", data_mount="/a")
    metadata = row.find("form", "metadata")
    assert metadata.attrs["method"] == "post" and metadata.attrs["accept-charset"] == "UTF-8"
    assert metadata.attrs["action"] == "/admin/metadata.xsl?mount=/a&mode=updinfo&charset=UTF-8"
    assert [i.attrs["name"] for i in metadata.find_all("input")] == ["song"]
    kill = row.find("form", "kill")
    assert (kill.attrs["method"], kill.attrs["action"]) == (
        "post", "/admin/killsource.xsl?mount=/a")
    move = row.find("form", "move")
    assert move.attrs["method"] == "post"
    assert [b.attrs["formaction"] for b in move.find_all("button")] == [
        "/admin/moveclients.xsl?mount=/a&destination=/hidden",
        "/admin/moveclients.xsl?mount=/a&destination=/relayed"]


def test_a_single_mount_has_no_move_form():
    page = overview(mounts=[("/a", full_stats("/a"))], hidden=set())
    assert page.find("tr", "mount").find_all("form", "move") == []


def test_overview_links_the_xml_of_every_command():
    page = overview()
    nav = [a.attrs["href"] for a in page.find("nav").find_all("a")]
    for url in ("/admin/stats", "/admin/listmounts", "/admin/streamlist.txt",
                "/status-json.xsl", "/metrics", "/"):
        assert url in nav
    raw = [a.attrs["href"] for a in page.find("tr", "mount", data_mount="/a").find("td", "raw")
           .find_all("a")]
    assert raw == ["/admin/stats?mount=/a", "/admin/listclients?mount=/a",
                   "/admin/moveclients?mount=/a"]


def test_manageauth_is_linked_for_a_mount_with_an_authenticator():
    stats = {**full_stats("/a"), "authenticator": "htpasswd"}
    links = [a.text() for a in overview(mounts=[("/a", stats)]).find("td", "raw").find_all("a")]
    assert links[-1] == "manageauth"


def test_overview_shows_relay_states():
    relays = overview().find("table", id="relays").find_all("tr", "relay")
    assert [[td.text() for td in r.find_all("td")] for r in relays] == [
        ["/relayed", "master.example:8000/relayed", "streaming", "2", "12345"]]
    source = overview().find("tr", "mount", data_mount="/relayed").find("td", "source").text()
    assert source == "relay from master.example:8000/relayed"


def test_overview_shows_the_slave_table():
    slaves = overview().find("table", id="slaves").find_all("tr", "slave")
    assert [[td.text() for td in r.find_all("td")] for r in slaves] == [
        ["edge1.example", "8001", "in 25 s", "0.3"],
        ["edge2.example", "8002", "never (configured)", "—"]]


def test_empty_tables_say_so():
    page = overview(mounts=[], slaves=[])
    assert page.find("table", id="mounts").find("tr", "none").text() == "No mount is live."
    assert page.find("table", id="relays").find("tr", "none").text() == "No relay is running."
    assert page.find("table", id="slaves").find("tr", "none").text() == "No slave is registered."


def test_overview_shows_the_server_and_names_fanout():
    page = overview()
    server = {dt.text(): dd.text() for dt, dd in zip(page.find("dl").find_all("dt"),
                                                     page.find("dl").find_all("dd"))}
    assert server["Server"] == "Icecast 2.4.4 (fanout 1)" and server["Listeners now"] == "3"
    assert server["Started"] == SERVER["server_start"]
    assert page.find("footer").text() == "fanout 1.2.3, compatible with Icecast 2.4.4."
    assert page.find_all("script") == []  # the admin UI needs no JavaScript


def test_a_mount_of_any_bytes_is_addressed_by_its_exact_bytes():
    page = overview(mounts=[(BAD, full_stats(BAD)), ("/b", full_stats("/b"))], hidden=set())
    row = page.find("tr", "mount", data_mount="/café &=+#.mp3")
    urls = [row.find("form", "kill").attrs["action"], row.find("form", "metadata").attrs["action"],
            row.find("td", "mount").find("a").attrs["href"]]
    for url in urls:
        assert query_bytes(url)["mount"] == to_wire(BAD)
    back = page.find("tr", "mount", data_mount="/b").find("form", "move").find("button")
    assert query_bytes(back.attrs["formaction"]) == {"mount": b"/b", "destination": to_wire(BAD)}


def test_overview_shows_hostile_text_as_text():
    stats = full_stats("/a", HOSTILE, headers=[("ice-name", HOSTILE)])
    stats["user_agent"] = HOSTILE
    page = overview(mounts=[("/a", stats)], server={**SERVER, "server_id": HOSTILE})
    row = page.find("tr", "mount")
    assert row.find(cls="server_name").text() == HOSTILE
    assert row.find("td", "title").text() == HOSTILE
    assert HOSTILE in row.find("td", "source").text()
    assert page.find("title").text() == f"Administration · {HOSTILE}"
    assert page.find_all("script") == []


# --- a mount's page ---------------------------------------------------------------------------

CLIENTS = [ListedClient("192.0.2.1", "VLC/3.0", 3725, 7), ListedClient("192.0.2.2", "", 42, 9)]


def test_mount_page_lists_its_listeners_each_with_a_kick_form():
    page = parse_html(render_admin_mount("/a", full_stats("/a", "Song"), CLIENTS, ["/a", "/b"]))
    rows = page.find("table", id="listeners").find_all("tr", "listener")
    assert [[td.text() for td in r.find_all("td")][:4] for r in rows] == [
        ["7", "192.0.2.1", "VLC/3.0", "1 h 02 min"], ["9", "192.0.2.2", "Unknown", "42 s"]]
    kick = rows[1].find("form")
    assert (kick.attrs["method"], kick.attrs["action"]) == (
        "post", "/admin/killclient.xsl?mount=/a&id=9")
    assert [h.text() for h in page.find_all("h2")] == ["Mount /a", "Listeners (2)"]


def test_mount_page_has_the_metadata_move_and_kill_forms():
    page = parse_html(render_admin_mount("/a", full_stats("/a", "Song"), [], ["/a", "/b"]))
    assert page.find("form", "metadata").attrs["action"].startswith("/admin/metadata.xsl?mount=/a")
    assert [b.text() for b in page.find("form", "move").find_all("button")] == ["/b"]
    assert page.find("form", "kill").attrs["action"] == "/admin/killsource.xsl?mount=/a"
    assert page.find("span", "title").text() == "Song"
    assert page.find("table", id="listeners").find("tr", "none").text() == "No listener."


def test_mount_page_of_hostile_and_non_utf8_text_is_valid():
    clients = [ListedClient("192.0.2.1", HOSTILE, 1, 1),
               ListedClient("::1", from_wire(b"\xff\x01"), 1, 2)]
    page = parse_html(render_admin_mount(BAD, full_stats(BAD, HOSTILE), clients, [BAD]))
    assert page.find("span", "mount").text() == "/café &=+#.mp3"
    agents = [r.find_all("td")[2].text() for r in page.find_all("tr", "listener")]
    assert agents == [HOSTILE, "ÿ\ufffd"]
    assert query_bytes(page.find("tr", "listener").find("form").attrs["action"]) == {
        "mount": to_wire(BAD), "id": b"1"}


# --- results, durations, slaves, headers ------------------------------------------------------

def test_result_page_says_what_happened_and_links_back():
    page = parse_html(render_admin_result("Source Removed", True))
    assert page.find("p", "result").classes == ["result", "ok"]
    assert page.find("p", "result").text() == "Source Removed"
    assert page.find("a", "back").attrs["href"] == "/admin/"
    failed = parse_html(render_admin_result(f"Client {HOSTILE} not found", False,
                                            "/admin/x?a=1&b=2"))
    assert failed.find("p", "result").classes == ["result", "failed"]
    assert failed.find("p", "result").text() == f"Client {HOSTILE} not found"
    assert failed.find("a", "back").attrs["href"] == "/admin/x?a=1&b=2"


@pytest.mark.parametrize("seconds, text", [
    (0, "0 s"), (42.9, "42 s"), (60, "1 min 00 s"), (187, "3 min 07 s"), (3600, "1 h 00 min"),
    (7505, "2 h 05 min"), (-3, "0 s"),
])
def test_durations_read_naturally(seconds, text):
    assert duration_text(seconds) == text


def test_slave_rows_come_from_the_redirect_tables_targets():
    targets = [Target("edge1", 8001, 130.0), Target("static", 8002, None)]
    assert slave_rows(targets, 100.0, {("edge1", 8001): "12"}) == [
        SlaveRow("edge1", 8001, 30.0, "12"), SlaveRow("static", 8002, None, None)]


def test_admin_pages_are_not_framed_nor_leak_their_urls():
    assert dict(ADMIN_HEADERS) == {"X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
                                   "X-Content-Type-Options": "nosniff"}
