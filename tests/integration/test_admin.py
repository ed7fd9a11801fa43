"""The admin interface (§6.1–6.3) through a real fanout with two workers."""
from __future__ import annotations

import pytest

from tests.support.admin import ADMIN, get, listeners_on_every_worker
from tests.support.clients import Listener, Source, basic
from tests.support.media import FfmpegSource, needs_ffmpeg, ogg_pages
from tests.support.server import SOURCE_PASSWORD, icecast_xml, start_fanout
from tests.support.waiting import wait_for

MOUNTS = "<mount><mount-name>/hidden</mount-name><hidden>1</hidden></mount>"
COMMANDS = ["stats", "listmounts", "listclients?mount=/m", "killclient?mount=/m&id=1",
            "killsource?mount=/m", "moveclients?mount=/m&destination=/n"]
WRONG = [None, basic("admin", "wrong"), basic("nobody", "hackme-admin"), "Bearer token"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # Its test sources send a little and then wait while the test looks: they must not
    # time out however long the looking takes.
    srv = start_fanout(icecast_xml(mounts=MOUNTS, sources=16, source_timeout=600),
                       tmp_path_factory.mktemp("admin"), workers=2)
    yield srv
    assert srv.stop() == 0, srv.output()


def live_source(server, mount: str, **kwargs) -> Source:
    """A source on `mount` that has sent some bytes, once the mount serves listeners."""
    source = Source(server.host, server.port, mount, **kwargs)
    assert source.accepted, source.response
    source.send_pattern(16 * 1024)

    def serves() -> bool:
        probe = Listener(server.host, server.port, mount).start()
        probe.close()
        return probe.head.startswith(b"HTTP/1.0 200")

    wait_for(serves, 5, f"{mount} to serve")

    def probes_gone() -> bool:
        source.send_pattern(4096)  # a closed listener is noticed when the next bytes go out
        return listeners_of(server, mount) == 0

    wait_for(probes_gone, 5, "the probes to leave")
    return source


def listeners_of(server, mount: str) -> int | None:
    node = get(server, "/admin/listmounts").xml().find(f"source[@mount='{mount}']")
    return None if node is None else int(node.findtext("listeners"))


def stats_of(server, mount: str):
    return get(server, "/admin/stats").xml().find(f"source[@mount='{mount}']")


@pytest.mark.parametrize("authorization", WRONG, ids=["none", "bad-password", "bad-user", "bearer"])
@pytest.mark.parametrize("command", COMMANDS)
def test_admin_command_without_admin_credentials_is_401(server, command, authorization):
    answer = get(server, f"/admin/{command}", authorization)
    assert answer.status == 401
    assert answer.headers["www-authenticate"] == 'Basic realm="Icecast2 Server"'


def test_unknown_admin_command_is_400(server):
    assert get(server, "/admin/frobnicate").status == 400


def test_listmounts_lists_every_mount_hidden_included(server):
    sources = [live_source(server, "/lm-a"), live_source(server, "/hidden")]
    answer = get(server, "/admin/listmounts")
    assert answer.status == 200 and answer.headers["content-type"] == "text/xml; charset=utf-8"
    mounts = {s.get("mount"): s for s in answer.xml().findall("source")}
    assert {"/lm-a", "/hidden"} <= set(mounts)
    assert [c.tag for c in mounts["/lm-a"]] == ["fallback", "listeners", "Connected", "content-type"]
    assert mounts["/lm-a"].findtext("content-type") == "application/octet-stream"
    for source in sources:
        source.close()


def test_stats_sums_listeners_over_workers(server):
    source = live_source(server, "/st-sum")
    listeners = listeners_on_every_worker(server, "/st-sum")
    wait_for(lambda: stats_of(server, "/st-sum").findtext("listeners") == str(len(listeners)), 5,
             "every listener counted")
    mount = stats_of(server, "/st-sum")
    assert int(mount.findtext("listener_peak")) >= len(listeners)
    assert int(get(server, "/admin/stats").xml().findtext("listeners")) >= len(listeners)
    for listener in listeners:
        listener.close()
    source.close()


def test_stats_shows_source_headers_title_and_byte_counts(server):
    headers = {"ice-name": "Name <&>", "ice-genre": "jazz", "ice-bitrate": "128"}
    source = live_source(server, "/st-info", content_type="audio/mpeg", headers=headers)
    wait_for(lambda: stats_of(server, "/st-info").findtext("total_bytes_read") == str(source.sent),
             5, "every byte read counted")
    mount = stats_of(server, "/st-info")
    assert mount.findtext("server_name") == "Name <&>"
    assert mount.findtext("genre") == "jazz" and mount.findtext("bitrate") == "128"
    assert mount.findtext("server_type") == "audio/mpeg"
    assert mount.findtext("source_ip") == "127.0.0.1"
    assert mount.findtext("user_agent") == "fanout-tests"
    assert mount.findtext("slow_listeners") == "0"
    assert [child.tag for child in mount] == sorted(child.tag for child in mount)
    source.close()


def test_total_bytes_sent_counts_listeners_on_every_worker(server):
    source = live_source(server, "/st-sent")
    listeners = listeners_on_every_worker(server, "/st-sent")
    source.send_pattern(64 * 1024)
    wait_for(lambda: all(len(l.body) >= 64 * 1024 for l in listeners), 5, "the listeners fed")
    sent = int(stats_of(server, "/st-sent").findtext("total_bytes_sent"))
    assert sent >= sum(len(l.body) for l in listeners)
    for listener in listeners:
        listener.close()
    source.close()


def test_listclients_lists_the_listeners_of_every_worker(server):
    source = live_source(server, "/lc")
    listeners = listeners_on_every_worker(server, "/lc")
    answer = get(server, "/admin/listclients?mount=/lc").xml()
    node = answer.find("source[@mount='/lc']")
    assert node.findtext("Listeners") == str(len(listeners))
    clients = node.findall("listener")
    assert len({c.findtext("ID") for c in clients}) == len(listeners)
    assert all(c.findtext("UserAgent") == "fanout-test-listener" for c in clients)
    assert [e.tag for e in clients[0]] == ["IP", "UserAgent", "Connected", "ID"]
    for listener in listeners:
        listener.close()
    source.close()


def test_source_credentials_may_list_their_own_mounts_clients(server):
    source = live_source(server, "/lc-own")
    answer = get(server, "/admin/listclients?mount=/lc-own", basic("source", SOURCE_PASSWORD))
    assert answer.status == 200
    assert get(server, "/admin/listmounts", basic("source", SOURCE_PASSWORD)).status == 401
    source.close()


def test_command_on_a_mount_without_source_is_400(server):
    assert get(server, "/admin/listclients?mount=/nothing-here").status == 400


def test_killclient_closes_listeners_on_every_worker(server):
    source = live_source(server, "/kc")
    listeners = listeners_on_every_worker(server, "/kc")
    ids = [c.findtext("ID") for c in get(server, "/admin/listclients?mount=/kc").xml().iter("listener")]
    for client_id in ids:
        answer = get(server, f"/admin/killclient?mount=/kc&id={client_id}").xml()
        assert answer.findtext("message") == f"Client {client_id} removed"
        assert answer.findtext("return") == "1"
    assert all(listener.closed.wait(5) for listener in listeners)
    assert listeners_of(server, "/kc") == 0
    source.close()


def test_killclient_of_an_unknown_id_is_not_found(server):
    source = live_source(server, "/kc-none")
    answer = get(server, "/admin/killclient?mount=/kc-none&id=999999").xml()
    assert answer.findtext("message") == "Client 999999 not found"
    assert answer.findtext("return") == "0"
    source.close()


def test_killsource_ends_the_mount_and_its_listeners(server):
    source = live_source(server, "/ks")
    listeners = listeners_on_every_worker(server, "/ks")
    answer = get(server, "/admin/killsource?mount=/ks").xml()
    assert answer.findtext("message") == "Source Removed"
    assert all(listener.closed.wait(10) for listener in listeners)
    wait_for(lambda: listeners_of(server, "/ks") is None, 5, "the mount to go")
    source.close()


def test_moveclients_moves_listeners_on_every_worker_without_closing_them(server):
    origin, target = live_source(server, "/mv-from"), live_source(server, "/mv-to")
    listeners = listeners_on_every_worker(server, "/mv-from")
    answer = get(server, "/admin/moveclients?mount=/mv-from&destination=/mv-to").xml()
    assert answer.findtext("message") == "Clients moved from /mv-from to /mv-to"
    assert listeners_of(server, "/mv-to") == len(listeners)
    assert listeners_of(server, "/mv-from") == 0
    marks = [len(listener.body) for listener in listeners]
    target.send(b"\xa5" * 32768)
    wait_for(lambda: all(l.body.endswith(b"\xa5" * 1024) for l in listeners), 5,
             "the destination's bytes at every moved listener")
    assert not any(listener.closed.is_set() for listener in listeners)
    assert all(len(l.body) > mark for l, mark in zip(listeners, marks))
    for listener in listeners:
        listener.close()
    origin.close()
    target.close()


def test_moveclients_refuses_an_identical_or_missing_destination(server):
    source = live_source(server, "/mv-bad")
    assert get(server, "/admin/moveclients?mount=/mv-bad&destination=/mv-bad").status == 400
    assert get(server, "/admin/moveclients?mount=/mv-bad&destination=/absent").status == 400
    source.close()


def test_moveclients_between_formats_moves_nobody(server):
    mp3 = live_source(server, "/mv-mp3", content_type="audio/mpeg")
    other = live_source(server, "/mv-raw")
    listener = Listener(server.host, server.port, "/mv-mp3").start()
    wait_for(lambda: listeners_of(server, "/mv-mp3") == 1, 5, "the listener counted")
    assert get(server, "/admin/moveclients?mount=/mv-mp3&destination=/mv-raw").status == 200
    assert listeners_of(server, "/mv-mp3") == 1
    listener.close()
    mp3.close()
    other.close()


def test_admin_credentials_are_not_written_to_the_log(server):
    get(server, "/admin/stats", ADMIN)
    assert "hackme-admin" not in server.output()


@needs_ffmpeg
def test_moveclients_gives_moved_ogg_listeners_whole_pages_then_the_new_headers(server):
    with FfmpegSource(server, "/mv-1.ogg", "vorbis", "application/ogg"), \
            FfmpegSource(server, "/mv-2.ogg", "vorbis", "application/ogg"):
        wait_for(lambda: listeners_of(server, "/mv-2.ogg") == 0, 10, "both Ogg mounts up")
        wait_for(lambda: listeners_of(server, "/mv-1.ogg") == 0, 10, "both Ogg mounts up")
        listeners = listeners_on_every_worker(server, "/mv-1.ogg")
        wait_for(lambda: all(len(l.body) > 8192 for l in listeners), 10, "Ogg data before")
        get(server, "/admin/moveclients?mount=/mv-1.ogg&destination=/mv-2.ogg")
        wait_for(lambda: listeners_of(server, "/mv-2.ogg") == len(listeners), 5, "all moved")
        wait_for(lambda: all(len(bos_serials(l.body)) == 2 for l in listeners), 10,
                 "the destination's header pages at every moved listener")
        for listener in listeners:
            listener.close()


def bos_serials(body: bytes) -> list[int]:
    """Serials of the streams that begin in `body`; AssertionError unless it is whole pages."""
    whole = bytes(body[:body.rfind(b"OggS")])  # the last page may still be arriving
    return [page.serial for page in ogg_pages(whole) if page.bos] if whole else []


def test_stats_carry_the_title_set_through_metadata(server):
    source = live_source(server, "/st-title", content_type="audio/mpeg")
    answer = get(server, "/admin/metadata?mount=/st-title&mode=updinfo&song=Artist%20-%20Song")
    assert answer.xml().findtext("return") == "1"
    wait_for(lambda: stats_of(server, "/st-title").findtext("title") == "Artist - Song", 5,
             "the title in the stats")
    source.close()
