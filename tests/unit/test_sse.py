"""The status page's event stream (fanout.protocol.sse), read with the HTML standard's
event-stream parsing rules."""
from __future__ import annotations

import json
import re

from fanout.protocol.sse import (
    EVENTS_TYPE, KEEPALIVE_SECONDS, RETRY_MS, changes, gone_event, keepalive, mount_event,
    opening, render_events_head, views,
)
from fanout.protocol.stats import MountFigures, MountSettings, mount_stats, public_mount_stats
from fanout.protocol.status_page import mount_view
from fanout.protocol.text import from_wire

# Most proxies close a connection idle for 60 s (nginx proxy_read_timeout's default).
PROXY_IDLE_TIMEOUT = 60


def stats(name: str = "/live", title: str = "", listeners: int = 1, headers=()) -> dict[str, str]:
    figures = MountFigures(name=name, content_type="audio/mpeg", headers=headers,
                           source_ip="10.0.0.1", user_agent="enc/1", title=title,
                           stream_start=1_700_000_000.0, listeners=listeners, listener_peak=4,
                           slow_listeners=0, bytes_read=1, bytes_sent=1,
                           settings=MountSettings())
    return public_mount_stats(mount_stats(figures, "h", 8000))


def parse_stream(data: bytes) -> tuple[list[tuple[str, str]], list[int]]:
    """(events as (type, data), retry values) as a browser's EventSource reads them."""
    events, retries = [], []
    kind, lines = "", []
    for line in re.split(r"\r\n|\r|\n", data.decode("utf-8")):
        if line == "":
            if lines:
                events.append((kind or "message", "\n".join(lines)))
            kind, lines = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            kind = value
        elif name == "data":
            lines.append(value)
        elif name == "retry" and value.isdigit():
            retries.append(int(value))
    return events, retries


def test_opening_sets_the_retry_delay_then_lists_every_mount():
    mounts = views([stats("/a"), stats("/b")])
    events, retries = parse_stream(opening(mounts))
    assert retries == [RETRY_MS]
    assert [(kind, json.loads(data)["path"]) for kind, data in events] == [
        ("mount", "/a"), ("mount", "/b")]


def test_a_mount_event_carries_the_rows_view():
    events, _ = parse_stream(mount_event(mount_view(stats("/live", "T"))))
    assert len(events) == 1
    kind, data = events[0]
    assert kind == "mount" and json.loads(data) == mount_view(stats("/live", "T"))
    assert json.loads(data)["title"] == "T" and json.loads(data)["listeners"] == "1"


def test_a_gone_event_names_the_mount_and_its_path():
    events, _ = parse_stream(gone_event(mount_view(stats(from_wire(b"/caf\xe9")))))
    assert events == [("gone", '{"mount":"/café","path":"/caf%E9"}')]


def test_no_text_can_break_a_data_line_or_forge_an_event():
    hostile = "a\nevent: gone\r\ndata: {}\r\rb\u2028c\u0085d"
    event = mount_event(mount_view(stats("/x", hostile, headers=[("ice-name", hostile)])))
    events, _ = parse_stream(event)
    assert [kind for kind, _ in events] == ["mount"]
    assert event.count(b"\n") == 3 and b"\r" not in event  # event:, data:, blank line
    payload = json.loads(events[0][1])
    assert payload["server_name"] == payload["title"] == "a\ufffdevent: gone\ufffd\ufffddata: {}" \
        "\ufffd\ufffdb\u2028c\ufffdd"


def test_non_utf8_text_reads_as_latin1_in_valid_utf8():
    event = mount_event(mount_view(stats(headers=[("ice-name", from_wire(b"caf\xe9"))])))
    event.decode("utf-8")  # strict
    assert json.loads(parse_stream(event)[0][0][1])["server_name"] == "café"


def test_nothing_changed_sends_nothing():
    now = views([stats("/a", "T"), stats("/b")])
    assert changes(now, views([stats("/a", "T"), stats("/b")])) == b""


def test_a_new_title_or_listener_count_sends_that_mount_only():
    before = views([stats("/a", "T"), stats("/b")])
    events, _ = parse_stream(changes(before, views([stats("/a", "U"), stats("/b")])))
    assert [(k, json.loads(d)["path"], json.loads(d)["title"]) for k, d in events] == [
        ("mount", "/a", "U")]
    events, _ = parse_stream(changes(before, views([stats("/a", "T"), stats("/b", listeners=9)])))
    assert [(k, json.loads(d)["listeners"]) for k, d in events] == [("mount", "9")]


def test_a_new_mount_is_sent_and_a_mount_that_left_is_gone():
    before = views([stats("/a"), stats("/b")])
    events, _ = parse_stream(changes(before, views([stats("/b"), stats("/c")])))
    assert [(k, json.loads(d)["path"]) for k, d in events] == [("gone", "/a"), ("mount", "/c")]


def test_keepalive_is_a_comment_the_browser_ignores():
    assert keepalive().startswith(b":")
    assert parse_stream(keepalive()) == ([], [])
    assert KEEPALIVE_SECONDS < PROXY_IDLE_TIMEOUT


def test_events_head_is_an_open_ended_uncached_event_stream():
    head = render_events_head("Icecast 2.4.4", 0.0).decode()
    lines = head.split("\r\n")
    assert lines[0] == "HTTP/1.0 200 OK" and head.endswith("\r\n\r\n")
    assert f"Content-Type: {EVENTS_TYPE}" in lines
    assert "Cache-Control: no-cache, no-store" in lines and "X-Accel-Buffering: no" in lines
    assert not any(line.lower().startswith("content-length") for line in lines)
