"""The pure renderers of stats, status and metrics (fanout.protocol), read like §6.3–6.5."""
from __future__ import annotations

import dataclasses
import json
import xml.etree.ElementTree as ET

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fanout.protocol.prometheus import MetricFamily, render_metrics
from fanout.protocol.stats import (
    MountFigures, MountSettings, ServerFigures, global_stats, iso_date, local_date, mount_stats,
    public_mount_stats,
)
from fanout.protocol.stats_xml import (
    ListedClient, ListedMount, render_iceresponse, render_listclients, render_listmounts,
    render_stats,
)
from fanout.protocol.status_json import json_value, render_health, render_status_json
from fanout.protocol.identity import default_server_id, product_name
from fanout.protocol.sse import EVENTS_PATH
from fanout.protocol.status_page import (
    REFRESH_SECONDS, TEXT_FIELDS, bitrate_text, codec_name, now_playing, render_status_page,
)
from fanout.protocol.text import from_wire
from tests.support.htmltree import Element, parse_html

HOSTILE = '<script>alert("x")</script> & \'co\''


def figures(name: str = "/live", headers=(), title: str = "", **settings) -> MountFigures:
    return MountFigures(name=name, content_type="audio/mpeg", headers=headers,
                        source_ip="10.0.0.1", user_agent="enc/1", title=title,
                        stream_start=1_700_000_000.0, listeners=3, listener_peak=5,
                        slow_listeners=1, bytes_read=1000, bytes_sent=5000,
                        settings=MountSettings(**settings))


SERVER = ServerFigures(admin="a@b", host="radio.example", location="Earth",
                       server_id="Icecast 2.4.4", server_start=1_700_000_000.0, port=8000,
                       clients=4, listeners=3, sources=1, connections=9,
                       source_client_connections=1, listener_connections=3)


@pytest.mark.parametrize("text, value", [
    ("3", 3), ("0", 0), ("-2", -2), ("1.5", 1.5), ("1.50", 1.5), ("-0.5", -0.5), (" 12", 12),
    ("007", "007"), ("0.3", "0.3"), ("true", True), ("TRUE", True), ("False", False),
    ("128k", "128k"), ("", None),
    # Numbers to XPath that are no JSON numbers: Icecast writes them bare (invalid JSON).
    (".5", ".5"), ("5.", "5."), ("-05", "-05"),
])
def test_json_typing_follows_icecasts_stylesheet(text, value):
    assert json_value(text) == value and type(json_value(text)) is type(value)


def test_unspecified_name_description_and_genre_as_icecast():
    stats = mount_stats(figures(), "h", 8000)
    assert stats["server_name"] == "Unspecified name"
    assert stats["server_description"] == "Unspecified description"
    assert stats["genre"] == "various"
    assert "title" not in stats and "server_url" not in stats


def test_audio_info_pairs_become_their_own_stats():
    stats = mount_stats(figures(headers=[("ice-audio-info", "ice-samplerate=44100;channels=2")]),
                        "h", 8000)
    assert stats["ice-samplerate"] == "44100" and stats["channels"] == "2"


def test_mount_settings_override_source_headers():
    stats = mount_stats(figures(headers=[("ice-name", "from source")], stream_name="configured"),
                        "h", 8000)
    assert stats["server_name"] == "configured"


def test_mount_stats_are_sorted_and_listenurl_uses_hostname_and_port():
    stats = mount_stats(figures(), "radio.example", 8123)
    assert list(stats) == sorted(stats)
    assert stats["listenurl"] == "http://radio.example:8123/live"
    assert stats["max_listeners"] == "unlimited"


def test_public_stats_drop_private_and_connection_keys():
    public = public_mount_stats({**mount_stats(figures(), "h", 1), "listener_connections": "2"})
    for key in ("source_ip", "user_agent", "total_bytes_sent", "total_bytes_read",
                "slow_listeners", "max_listeners", "public", "listener_connections"):
        assert key not in public


def test_status_json_source_is_object_for_one_array_for_many_absent_for_none():
    glob = global_stats(SERVER)
    one = public_mount_stats(mount_stats(figures(), "h", 1))
    assert isinstance(json.loads(render_status_json(glob, [one]))["icestats"]["source"], dict)
    assert len(json.loads(render_status_json(glob, [one, one]))["icestats"]["source"]) == 2
    assert "source" not in json.loads(render_status_json(glob, []))["icestats"]


def test_status_json_global_keys_are_icecasts_public_ones():
    icestats = json.loads(render_status_json(global_stats(SERVER), []))["icestats"]
    assert list(icestats) == ["admin", "host", "location", "server_id", "server_start",
                              "server_start_iso8601", "dummy"]


def test_status_json_sources_end_with_dummy_null_when_their_last_key_is_dropped():
    source = json.loads(render_status_json(global_stats(SERVER), [
        mount_stats(figures(), "h", 1)]))["icestats"]["source"]
    assert list(source.items())[-1] == ("dummy", None)  # user_agent, dropped, sorts last


def test_status_json_sources_end_without_dummy_when_a_shown_key_sorts_last():
    stats = mount_stats(figures(headers=[("ice-audio-info", "zoom=2")]), "h", 1)
    source = json.loads(render_status_json(global_stats(SERVER), [stats]))["icestats"]["source"]
    assert list(source.items())[-1] == ("zoom", 2) and "dummy" not in source


def test_global_stats_are_in_icecasts_order():
    assert list(global_stats(SERVER)) == sorted(global_stats(SERVER))


def test_stats_xml_escapes_source_text():
    body = render_stats(global_stats(SERVER), [("/a&b", {"title": HOSTILE})])
    assert body.startswith(b'<?xml version="1.0"?>\n<icestats>') and body.endswith(b"\n")
    source = ET.fromstring(body).find("source")
    assert source.get("mount") == "/a&b" and source.findtext("title") == HOSTILE


def test_listmounts_children_in_icecasts_order():
    body = render_listmounts([ListedMount("/m", 2, 30, "audio/mpeg")])
    assert [e.tag for e in ET.fromstring(body).find("source")] == [
        "fallback", "listeners", "Connected", "content-type"]


def test_listclients_says_unknown_for_a_missing_user_agent():
    body = render_listclients("/m", [ListedClient("1.2.3.4", "", 5, 64)])
    source = ET.fromstring(body).find("source")
    assert source.findtext("Listeners") == "1"
    assert source.find("listener").findtext("UserAgent") == "Unknown"


def test_iceresponse_layout():
    assert render_iceresponse("Source Removed", True) == (
        b'<?xml version="1.0"?>\n<iceresponse><message>Source Removed</message>'
        b"<return>1</return></iceresponse>\n")


def test_metrics_parse_with_prometheus_client_and_escape_labels():
    family = MetricFamily("fanout_mount_listeners", "gauge", "Listeners").add(3, mount='/a"\\\n')
    counter = MetricFamily("fanout_connections_accepted_total", "counter", "Accepted").add(7)
    parsed = {f.name: f for f in text_string_to_metric_families(
        render_metrics([family, counter]).decode())}
    # Quote and backslash escaped; a control character is shown as U+FFFD (text.display).
    assert parsed["fanout_mount_listeners"].samples[0].labels == {"mount": '/a"\\\ufffd'}
    assert parsed["fanout_connections_accepted"].type == "counter"
    assert parsed["fanout_connections_accepted"].samples[0].value == 7


def test_health_says_shutting_down_when_not_serving():
    assert json.loads(render_health(False, 0, 1.0))["status"] == "shutting_down"
    assert json.loads(render_health(True, 2, 1.0))["status"] == "ok"


# --- any bytes render validly (text.display) ---------------------------------------------

BAD_MOUNT = from_wire(b"/\xff\xfd.mp3")
LATIN1_NAME = from_wire(b"caf\xe9")  # Ice-Name from an older encoder


def non_utf8_stats() -> dict[str, str]:
    return mount_stats(figures(name=BAD_MOUNT, headers=[("ice-name", LATIN1_NAME),
                                                        ("ice-genre", "a\r\nb\x01")],
                               title="x\x00y"), "h", 8000)


def test_listenurl_is_a_url_that_requests_the_mounts_exact_bytes():
    assert non_utf8_stats()["listenurl"] == "http://h:8000/%FF%FD.mp3"


def test_stats_xml_of_non_utf8_text_is_valid_and_reads_as_latin1():
    body = render_stats(global_stats(SERVER), [(BAD_MOUNT, non_utf8_stats())])
    body.decode("utf-8")
    source = ET.fromstring(body).find("source")
    assert source.get("mount") == "/ÿý.mp3"
    assert source.findtext("server_name") == "café"
    assert source.findtext("genre") == "a\ufffd\ufffdb\ufffd"
    assert source.findtext("title") == "x\ufffdy"


def test_listmounts_listclients_and_iceresponse_of_any_bytes_are_valid_xml():
    for body in (render_listmounts([ListedMount(BAD_MOUNT, 1, 2, "audio/mpeg", "\x01")],
                                   current=BAD_MOUNT),
                 render_listclients(BAD_MOUNT, [ListedClient("1.2.3.4", from_wire(b"\xff\x02"), 1, 1)]),
                 render_iceresponse("Clients moved from " + BAD_MOUNT, True)):
        ET.fromstring(body)
    client = ET.fromstring(render_listclients(
        BAD_MOUNT, [ListedClient("1.2.3.4", from_wire(b"\xff\x02"), 1, 1)])).find("source/listener")
    assert client.findtext("UserAgent") == "ÿ\ufffd"


def test_status_json_of_non_utf8_text_is_valid_json_reading_as_latin1():
    body = render_status_json(global_stats(SERVER), [public_mount_stats(non_utf8_stats())])
    source = json.loads(body)["icestats"]["source"]  # json.loads on bytes: strict UTF-8
    assert source["server_name"] == "café"
    assert source["listenurl"] == "http://h:8000/%FF%FD.mp3"
    assert source["genre"] == "a\ufffd\ufffdb\ufffd"


def test_status_json_keys_from_a_source_are_shown_too():
    body = render_status_json(global_stats(SERVER), [{"caf\udce9": "1"}])
    assert json.loads(body)["icestats"]["source"]["café"] == 1


def test_metrics_of_a_non_utf8_mount_parse_and_read_as_latin1():
    family = MetricFamily("fanout_mount_listeners", "gauge", "Listeners").add(3, mount=BAD_MOUNT)
    parsed = list(text_string_to_metric_families(render_metrics([family]).decode("utf-8")))
    assert parsed[0].samples[0].labels == {"mount": "/ÿý.mp3"}


def test_audio_info_names_that_cannot_be_xml_element_names_are_dropped():
    stats = mount_stats(figures(headers=[("ice-audio-info",
                                          "<x>=1;a b=2;channels=2;" + "k" * 65 + "=3")]), "h", 1)
    assert stats["channels"] == "2"
    assert not any(key in stats for key in ("<x>", "a b", "k" * 65))
    ET.fromstring(render_stats(global_stats(SERVER), [("/m", stats)]))


# --- the status page (fanout.protocol.status_page) -----------------------------------------

SERVER_STATS = global_stats(SERVER)


def page_of(*mounts: dict[str, str], **options) -> Element:
    return parse_html(render_status_page("Icecast 2.4.4", list(mounts), **options))


def public(name: str = "/live", headers=(), title: str = "", **settings) -> dict[str, str]:
    return public_mount_stats(mount_stats(figures(name, headers, title, **settings), "h", 8000))


MP3_HEADERS = [("ice-name", "Radio One"), ("ice-description", "All day"), ("ice-genre", "Jazz"),
               ("ice-bitrate", "128"), ("ice-url", "https://radio.example/")]


def test_status_page_row_shows_every_figure_of_a_mount():
    row = page_of(public("/live.mp3", MP3_HEADERS, "Miles - So What")).find("tr", "mount")
    shown = {cls: row.find(cls=cls).text() for cls in (
        "server_name", "server_description", "genre", "title", "listeners", "listener_peak",
        "codec", "bitrate", "stream_start", "listen")}
    assert shown == {"server_name": "Radio One", "server_description": "All day",
                     "genre": "Jazz", "title": "Miles - So What", "listeners": "3",
                     "listener_peak": "5", "codec": "MP3", "bitrate": "128 kbit/s",
                     "stream_start": local_date(1_700_000_000.0), "listen": "/live.mp3"}
    assert row.find("time", "stream_start").attrs["datetime"] == iso_date(1_700_000_000.0)
    assert row.attrs["data-mount"] == "/live.mp3" and row.attrs["data-path"] == "/live.mp3"


def test_status_page_row_has_a_player_and_both_playlists():
    row = page_of(public("/live.mp3")).find("tr", "mount")
    audio = row.find("audio")
    assert audio.attrs["src"] == "/live.mp3" and audio.attrs["preload"] == "none"
    assert row.find("a", "m3u").attrs["href"] == "/live.mp3.m3u"
    assert row.find("a", "xspf").attrs["href"] == "/live.mp3.xspf"


def test_status_page_has_a_row_and_a_player_per_mount():
    page = page_of(public("/a"), public("/b"))
    rows = page.find_all("tr", "mount")
    assert [r.attrs["data-mount"] for r in rows] == ["/a", "/b"]
    assert all(len(r.find_all("audio")) == 1 for r in rows)
    assert "hidden" in page.find("tr", "empty").attrs


def test_status_page_without_mounts_says_so():
    empty = page_of().find("tr", "empty")
    assert "hidden" not in empty.attrs and empty.text() == "No mount is streaming."


def test_status_page_names_the_server_its_start_and_fanout():
    page = page_of(public(), server=SERVER_STATS, version="9.8.7")
    assert page.find("title").text() == page.find("h1").text() == "Icecast 2.4.4"
    started = page.find("time", "server_start")
    assert started.text() == SERVER_STATS["server_start"]
    assert started.attrs["datetime"] == SERVER_STATS["server_start_iso8601"]
    assert "in Earth" in page.find("p", "server").text()
    assert page.find("footer").text().startswith("fanout 9.8.7, compatible with Icecast 2.4.4.")


def test_status_page_reloads_itself_only_without_javascript():
    noscript = page_of(public()).find("noscript")
    meta = noscript.find("meta")
    assert meta.attrs == {"http-equiv": "refresh", "content": str(REFRESH_SECONDS)}
    assert page_of(public()).find("p", id="live").find("a").attrs["href"] == ""


def test_status_page_names_its_event_stream_only_when_given():
    assert "data-events" not in page_of(public()).find("html").attrs
    live = page_of(public(), events=EVENTS_PATH).find("html")
    assert live.attrs["data-events"] == EVENTS_PATH


def test_status_page_template_row_is_a_row_with_nothing_in_it():
    page = page_of(public("/live.mp3", MP3_HEADERS, "x"))
    template = page.find("template", id="mount-row")
    empty = template.find_all("tr", "mount", into_templates=True)[0]
    row = page.find("tr", "mount")
    shape = lambda e: [(c.tag, tuple(c.classes)) for c in e.walk()]  # noqa: E731
    assert shape(empty) == shape(row)
    assert all(empty.find(cls=cls).text() == "" for cls in TEXT_FIELDS)


def test_status_page_has_one_script_and_it_writes_no_markup():
    page = page_of(public(headers=[("ice-name", HOSTILE)], title=HOSTILE))
    scripts = page.find_all("script")
    assert len(scripts) == 1
    code = scripts[0].text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in code
    assert json.dumps(list(TEXT_FIELDS)) in code


def test_status_page_escapes_every_source_value():
    stats = public("/x<y", [("ice-name", HOSTILE), ("ice-genre", HOSTILE),
                            ("ice-description", HOSTILE)], HOSTILE)
    body = render_status_page(HOSTILE, [stats])
    page = parse_html(body)
    row = page.find("tr", "mount")
    for cls in ("server_name", "genre", "server_description", "title"):
        assert row.find(cls=cls).text() == HOSTILE
    assert page.find("title").text() == HOSTILE
    assert len(page.find_all("script")) == 1  # the page's own, none from the text
    assert row.attrs["data-mount"] == "/x<y" and row.find("audio").attrs["src"] == "/x%3Cy"
    assert b"&lt;script&gt;" in body


def test_status_page_links_only_http_server_urls():
    def link(url: str) -> Element:
        return page_of(public(headers=[("ice-url", url)])).find("a", "server_name")
    assert link("https://radio.example/?a=1&b=2").attrs["href"] == "https://radio.example/?a=1&b=2"
    assert link("http://radio.example/").attrs["rel"] == "nofollow noopener"
    for hostile in ("javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:text/html,x",
                    "//evil.example/", " http://x/", "http://x/ y"):
        assert "href" not in link(hostile).attrs, hostile


def test_status_page_of_non_utf8_text_is_valid_html_linking_the_exact_mount():
    page = parse_html(render_status_page(from_wire(b"srv\xe9"),
                                         [public_mount_stats(non_utf8_stats())]))
    row = page.find("tr", "mount")
    assert row.find(cls="server_name").text() == "café"
    assert row.find(cls="genre").text() == "a\ufffd\ufffdb\ufffd"
    assert row.find(cls="title").text() == "x\ufffdy"
    assert row.find("a", "listen").attrs["href"] == "/%FF%FD.mp3"
    assert row.find("a", "m3u").attrs["href"] == "/%FF%FD.mp3.m3u"
    assert row.attrs["data-mount"] == "/ÿý.mp3" and page.find("title").text() == "srvé"


def test_two_mounts_that_display_alike_keep_apart_by_path():
    latin1, utf8 = from_wire(b"/caf\xe9"), "/café"
    rows = page_of(public(latin1), public(utf8)).find_all("tr", "mount")
    assert [r.attrs["data-mount"] for r in rows] == ["/café", "/café"]
    assert [r.attrs["data-path"] for r in rows] == ["/caf%E9", "/café"]


@pytest.mark.parametrize("stats, codec", [
    ({"server_type": "audio/mpeg"}, "MP3"),
    ({"server_type": "audio/aacp"}, "AAC+"),
    ({"server_type": "application/ogg", "subtype": "Vorbis"}, "Ogg Vorbis"),
    ({"server_type": "audio/ogg", "subtype": "Opus"}, "Ogg Opus"),
    ({"server_type": "application/ogg"}, "Ogg"),
    ({"server_type": "Audio/MPEG; rate=44100"}, "MP3"),
    ({"server_type": "application/x-strange"}, "application/x-strange"),
    ({}, ""),
])
def test_codec_is_named_as_people_call_it(stats, codec):
    assert codec_name(stats) == codec


@pytest.mark.parametrize("stats, text", [
    ({"bitrate": "128"}, "128 kbit/s"), ({"bitrate": "128k"}, "128k"),
    ({"ice-bitrate": "80", "audio_bitrate": "80000"}, "80 kbit/s"),
    ({"audio_bitrate": "95500"}, "96 kbit/s"), ({"audio_bitrate": "x"}, ""),
    ({"quality": "0.5"}, "quality 0.5"), ({}, ""),
])
def test_bitrate_is_shown_in_kbits_from_any_stat_icecast_has_or_as_the_quality(stats, text):
    assert bitrate_text(stats) == text


@pytest.mark.parametrize("stats, text", [
    ({"artist": "A", "title": "T"}, "A - T"), ({"title": "T"}, "T"), ({"artist": "A"}, "A"),
    ({}, ""),
])
def test_now_playing_is_artist_dash_title_as_icecast_shows_it(stats, text):
    assert now_playing(stats) == text


def test_server_identity_rule():
    assert product_name("0.1.0") == "fanout 0.1.0" and product_name("") == "fanout"
    assert default_server_id("0.1.0") == "Icecast 2.4.4 (fanout 0.1.0)"


# --- what /admin/stats counts, and what an Ogg link adds (issue 11, item 2) -----------------

def test_connection_counts_are_running_totals_under_icecasts_names():
    server = ServerFigures(admin="a", host="h", location="l", server_id="s", server_start=0.0,
                           port=1, clients=2, listeners=1, sources=1, connections=40,
                           client_connections=31, listener_connections=12,
                           source_client_connections=5, source_relay_connections=3,
                           file_connections=4)
    values = global_stats(server)
    assert {k: values[k] for k in values if "connections" in k} == {
        "client_connections": "31", "connections": "40", "file_connections": "4",
        "listener_connections": "12", "source_client_connections": "5",
        "source_relay_connections": "3", "source_total_connections": "8",
        "stats_connections": "0"}
    assert (values["clients"], values["listeners"], values["sources"]) == ("2", "1", "1")


def test_an_ogg_links_tags_show_and_its_subtype_wins_over_the_configured_one():
    ogg = dataclasses.replace(figures(subtype="configured"), content_type="application/ogg",
                              title="Song", artist="Band",
                              codec=(("audio_bitrate", "112000"), ("ice-bitrate", "112"),
                                     ("subtype", "Vorbis")))
    stats = mount_stats(ogg, "h", 1)
    assert (stats["title"], stats["artist"], stats["subtype"]) == ("Song", "Band", "Vorbis")
    assert (stats["audio_bitrate"], stats["ice-bitrate"]) == ("112000", "112")
    assert list(stats) == sorted(stats)


def test_a_source_without_user_agent_has_no_user_agent_stat():
    assert "user_agent" not in mount_stats(dataclasses.replace(figures(), user_agent=""), "h", 1)
