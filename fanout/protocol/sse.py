"""Server-sent events for the status page's live updates (HTML ``EventSource``).

Theory of operation
-------------------
A browser showing the status page opens ``EVENTS_PATH``; the answer is a
``text/event-stream`` that stays open. It starts with ``opening``: a ``retry:`` line (how
long the browser waits before it reconnects on its own) and one ``mount`` event per public
mount, a full snapshot, so a browser that reconnects is current at once and events need
no ``id``. From then on the handler takes the public stats now and then (or when told a
title or a listener count changed), keeps the last ``views`` it sent, and sends
``changes(before, after)``: a ``mount`` event for each mount that is new or shows
something different, a ``gone`` event for each that left (or became hidden). A stream
with nothing to say for ``KEEPALIVE_SECONDS`` gets a comment line, so proxies and the
browser keep it open.

Events, each ended by an empty line::

    retry: 3000
    event: mount
    data: {"server_name":"…","title":"…","listeners":"3",…,"mount":"/live","path":"/live"}
    event: gone
    data: {"mount":"/live","path":"/live"}
    : keep-alive

A ``mount`` payload is ``status_page.mount_view``: the very fields a row shows, every one
display text, so the page's script needs no rule of its own; ``path`` identifies the
mount. The JSON is on one line (``json.dumps`` escapes every line break), so no text can
end a ``data:`` line or forge an event. Only public mounts ever go in: the caller passes
public stats, exactly what `/status-json.xsl` shows.
"""
from __future__ import annotations

import json
from typing import Mapping, Sequence

from fanout.protocol.responses import Header, render_listener_head
from fanout.protocol.stats import Stats
from fanout.protocol.status_page import MountView, mount_view

EVENTS_PATH = "/status-events"
EVENTS_TYPE = "text/event-stream; charset=utf-8"
# How long a browser waits before reconnecting after the stream ended (milliseconds):
# long enough not to hammer a restarting server, short enough to look live.
RETRY_MS = 3000
# Longest silence on an open stream (seconds): well under the 60 s idle timeout of
# common proxies (nginx's proxy_read_timeout), so they never cut a quiet stream.
KEEPALIVE_SECONDS = 15
MOUNT_EVENT, GONE_EVENT = "mount", "gone"
# Sent with the head: nginx would otherwise buffer the stream and deliver it in lumps.
STREAM_HEADERS: tuple[Header, ...] = (("X-Accel-Buffering", "no"),)

Views = Mapping[str, MountView]


def render_events_head(server_id: str, now: float,
                       extra_headers: Sequence[Header] = ()) -> bytes:
    """The head of an event stream: Icecast's common head (no length: it ends at close)."""
    return render_listener_head(server_id=server_id, now=now, content_type=EVENTS_TYPE,
                                extra_headers=[*STREAM_HEADERS, *extra_headers],
                                icy_headers=(), metaint=0)


def views(mounts: Sequence[Stats]) -> dict[str, MountView]:
    """path -> row view of each public mount, in listing order."""
    shown = (mount_view(stats) for stats in mounts)
    return {view["path"]: view for view in shown}


def opening(current: Views, retry_ms: int = RETRY_MS) -> bytes:
    """What a new stream starts with: the retry delay, then every mount."""
    return f"retry: {retry_ms}\n\n".encode() + b"".join(map(mount_event, current.values()))


def changes(before: Views, after: Views) -> bytes:
    """The events that take a page showing ``before`` to ``after`` (b"" if none)."""
    left = [gone_event(view) for path, view in before.items() if path not in after]
    changed = [mount_event(view) for path, view in after.items() if before.get(path) != view]
    return b"".join(left + changed)


def mount_event(view: MountView) -> bytes:
    return render_event(MOUNT_EVENT, view)


def gone_event(view: MountView) -> bytes:
    return render_event(GONE_EVENT, {"mount": view["mount"], "path": view["path"]})


def render_event(kind: str, payload: Mapping[str, str]) -> bytes:
    """One event: its type, its JSON payload on one ``data:`` line, an empty line."""
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return f"event: {kind}\ndata: {data}\n\n".encode("utf-8")


def keepalive() -> bytes:
    """A comment line: ignored by the browser, but traffic for every proxy on the way."""
    return b": keep-alive\n\n"
