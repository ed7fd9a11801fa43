"""The human status page at `/` and `/status.xsl`: every public mount, updated live.

A page view shows one row per public mount: name (a link to its `server_url` when that
is an http(s) URL), description, genre, now playing, current and peak listeners, codec
and bitrate, when it went on air, a player and its .m3u/.xspf playlists; above them the
server's name and start, below them the product's honest name (``identity``).

Live updates: the page's small script opens an ``EventSource`` on ``events`` (the
`<html data-events>` attribute; none: no live updates) and applies each `mount` and
`gone` event of ``fanout.protocol.sse`` to the table; a row is found by its
``data-path`` (the mount as ``text.url_path``: one path per mount, while two mounts may
*display* alike). Without JavaScript a `<noscript>` refresh reloads the page every
``REFRESH_SECONDS``; a plain Reload link is always there.

Every value that came from a source or an upstream (names, descriptions, genres, titles,
URLs, mount names) is shown with ``text.display`` and escaped; the script only ever sets
``textContent`` and attributes, never markup. The page is always valid UTF-8. The player
is a plain `<audio preload="none">`, so a page view opens no stream until someone presses
play. ``mount_view`` is the one description of a row: the server-side rows, the row
template the script clones for a new mount, and the SSE payload are all made from it.
"""
from __future__ import annotations

import json
import re
from html import escape
from typing import Sequence
from urllib.parse import unquote, urlsplit

from fanout.protocol.identity import COMPATIBLE_WITH, product_name
from fanout.protocol.stats import Stats
from fanout.protocol.text import WIRE_ENCODING, WIRE_ERRORS, display
from fanout.protocol.web_assets import PAGE_STYLE, STATUS_SCRIPT, STATUS_STYLE

HTML_TYPE = "text/html; charset=utf-8"
# Without JavaScript the page reloads this often (seconds): figures stay roughly current.
REFRESH_SECONDS = 30
# Row fields the script writes as text, each into the row's element of that class.
TEXT_FIELDS = ("server_name", "server_description", "genre", "title", "listeners",
               "listener_peak", "codec", "bitrate", "stream_start", "cluster_listeners")
COLUMNS = ("Stream", "Now playing", "Listeners", "Format", "On air since", "Listen")
# Content-Type (no parameters) -> codec name; Ogg says its codec in the `subtype` stat.
CODECS = {"audio/mpeg": "MP3", "audio/mp3": "MP3", "audio/mpg": "MP3", "audio/aac": "AAC",
          "audio/aacp": "AAC+", "audio/x-aac": "AAC", "audio/flac": "FLAC",
          "audio/webm": "WebM", "video/webm": "WebM", "audio/opus": "Opus"}
OGG_TYPES = frozenset({"application/ogg", "audio/ogg", "video/ogg", "application/x-ogg"})
# A server_url becomes a link only with one of these schemes (never javascript: or data:).
_LINK = re.compile(r"https?://[^\s]+", re.IGNORECASE)

MountView = dict[str, str]


def render_status_page(server_id: str, mounts: Sequence[Stats], *, server: Stats | None = None,
                       version: str = "", events: str | None = None) -> bytes:
    """The page for ``mounts`` (public stats of each public mount, in listing order).

    ``server``: the global stats (its start and location are shown); ``version``: fanout's;
    ``events``: the path of the SSE stream (``sse.EVENTS_PATH``), None for a static page."""
    views = [mount_view(stats) for stats in mounts]
    title = html_text(server_id)
    events_attr = "" if events is None else f' data-events="{escape(events)}"'
    return (f'<!DOCTYPE html><html lang="en"{events_attr}><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{title}</title><noscript>"
            f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}"></noscript>'
            f"<style>{PAGE_STYLE}{STATUS_STYLE}</style></head><body>"
            f'<header class="top"><h1>{title}</h1>{_server_line(server)}</header>'
            f"<main>{_table(views)}"
            f'<template id="mount-row">{_row(_EMPTY_VIEW)}</template>'
            '<p id="live">Figures as of this page load. <a href="">Reload</a></p></main>'
            f"<footer>{escape(product_name(version))}, compatible with {COMPATIBLE_WITH}."
            ' Machine-readable: <a href="/status-json.xsl">status-json.xsl</a></footer>'
            f"<script>{_script()}</script></body></html>\n").encode("utf-8")


def mount_view(stats: Stats) -> MountView:
    """What a row shows of one mount's public stats: every value is display text."""
    path = urlsplit(stats.get("listenurl", "")).path
    shown = {key: display(value) for key, value in stats.items()}
    view = {key: shown.get(key, "") for key in TEXT_FIELDS}
    view.update({
        "mount": display(unquote(path, WIRE_ENCODING, WIRE_ERRORS)), "path": path,
        "server_url": safe_link(shown.get("server_url", "")), "title": now_playing(shown),
        "codec": codec_name(shown), "bitrate": bitrate_text(shown),
        "stream_start_iso8601": shown.get("stream_start_iso8601", ""),
    })
    return view


def now_playing(stats: Stats) -> str:
    """"artist - title" as Icecast's status page shows it, or whichever of them there is."""
    artist, title = stats.get("artist", ""), stats.get("title", "")
    return f"{artist} - {title}" if artist and title else artist or title


def codec_name(stats: Stats) -> str:
    """"MP3", "AAC", "Ogg Vorbis" …: the stream's codec as people call it; else its type."""
    content_type = stats.get("server_type", "").split(";")[0].strip().lower()
    if content_type in OGG_TYPES:
        return f"Ogg {stats['subtype']}" if stats.get("subtype") else "Ogg"
    return CODECS.get(content_type, stats.get("server_type", ""))


def bitrate_text(stats: Stats) -> str:
    """"128 kbit/s": the `bitrate` stat (kbit/s, from ice-bitrate/icy-br or the config),
    else what Icecast reports for Ogg (`ice-bitrate`, `audio_bitrate` in bit/s), else the
    Vorbis `quality`; "" when the stream said nothing."""
    kbits = stats.get("bitrate") or stats.get("ice-bitrate", "")
    if not kbits and stats.get("audio_bitrate", "").isdigit():
        kbits = str(round(int(stats["audio_bitrate"]) / 1000))
    if kbits:
        return f"{kbits} kbit/s" if kbits.isdigit() else kbits
    return f"quality {stats['quality']}" if stats.get("quality") else ""


def safe_link(url: str) -> str:
    """``url`` if it is an http(s) URL a page may link to, else "" (shown as text only)."""
    return url if _LINK.fullmatch(url) else ""


_EMPTY_VIEW: MountView = {key: "" for key in (*TEXT_FIELDS, "mount", "path", "server_url",
                                              "stream_start_iso8601")}


def html_text(value: str) -> str:
    """Wire text as HTML text or attribute value: ``text.display``, then escaped."""
    return escape(display(value))


def _server_line(server: Stats | None) -> str:
    if server is None or "server_start" not in server:
        return ""
    iso = html_text(server.get("server_start_iso8601", ""))
    started = (f'<time class="server_start" datetime="{iso}">'
               f'{html_text(server["server_start"])}</time>')
    where = f" in {html_text(server['location'])}" if server.get("location") else ""
    return f'<p class="server">Serving{where} since {started}{_cluster_line(server)}</p>'


def _cluster_line(server: Stats) -> str:
    """A master's cluster (issue 12 §3): its listeners and its live slaves'."""
    if "cluster_listeners" not in server:
        return ""
    return (f'<br><span class="cluster_total">{html_text(server["cluster_listeners"])}'
            f'</span> listeners on {html_text(server.get("cluster_nodes", "1"))} servers'
            " (this one and its slaves)")


def _table(views: list[MountView]) -> str:
    headings = "".join(f"<th>{name}</th>" for name in COLUMNS)
    hidden = " hidden" if views else ""
    empty = (f'<tr class="empty"{hidden}><td colspan="{len(COLUMNS)}">'
             "No mount is streaming.</td></tr>")
    rows = "".join(_row(view) for view in views)
    return (f'<table id="mounts"><thead><tr>{headings}</tr></thead>'
            f"<tbody>{rows}{empty}</tbody></table>")


def _row(view: MountView) -> str:
    e = {key: escape(value) for key, value in view.items()}
    link = f' href="{e["server_url"]}" rel="nofollow noopener"' if e["server_url"] else ""
    path = e["path"]
    stream = (f'<a class="server_name"{link}>{e["server_name"]}</a>'
              f'<div class="server_description">{e["server_description"]}</div>'
              f'<div class="genre">{e["genre"]}</div>'
              f'<a class="listen" href="{path}">{e["mount"]}</a>')
    audience = (f'<span class="listeners">{e["listeners"]}</span> now<br>'
                f'<span class="listener_peak">{e["listener_peak"]}</span> peak'
                # A master's listeners and its slaves' (issue 12); hidden while empty.
                f'<span class="in_cluster"><br><span class="cluster_listeners">'
                f'{e["cluster_listeners"]}</span> in the cluster</span>')
    kind = f'<span class="codec">{e["codec"]}</span> <span class="bitrate">{e["bitrate"]}</span>'
    since = (f'<time class="stream_start" datetime="{e["stream_start_iso8601"]}">'
             f'{e["stream_start"]}</time>')
    player = (f'<audio controls preload="none" src="{path}"></audio><br>'
              f'<a class="m3u" href="{path}.m3u">M3U</a> '
              f'<a class="xspf" href="{path}.xspf">XSPF</a>')
    cells = (("stream", stream), ("title", e["title"]), ("audience", audience),
             ("format", kind), ("since", since), ("player", player))
    body = "".join(f'<td class="{name}">{content}</td>' for name, content in cells)
    return f'<tr class="mount" data-mount="{e["mount"]}" data-path="{path}">{body}</tr>'


def _script() -> str:
    # The field names are our constants (identifiers), so their JSON is safe in a script.
    return STATUS_SCRIPT.replace("__TEXT_FIELDS__", json.dumps(list(TEXT_FIELDS)))
