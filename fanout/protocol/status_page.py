"""The human status page at `/` and `/status.xsl`: one row per public mount.

Every value that came from a source or an upstream (names, descriptions, genres, titles,
URLs, mount names) is shown with ``text.display`` and escaped before it reaches the HTML:
a stream name is attacker text, and may hold any byte. The page is always valid UTF-8.
A mount's link is its `listenurl` path, which is already a URL (``text.url_path``).
The player is a plain `<audio preload="none">`, so a page view opens no stream until the
visitor presses play.
"""
from __future__ import annotations

from html import escape
from typing import Sequence
from urllib.parse import unquote, urlsplit

from fanout.protocol.stats import Stats
from fanout.protocol.text import WIRE_ENCODING, WIRE_ERRORS, display

HTML_TYPE = "text/html; charset=utf-8"

# Columns: heading -> the stats key shown.
COLUMNS = (("Name", "server_name"), ("Description", "server_description"), ("Genre", "genre"),
           ("Bitrate", "bitrate"), ("Listeners", "listeners"), ("Now playing", "title"))

_STYLE = """body{font-family:sans-serif;margin:2em;background:#fff;color:#111}
table{border-collapse:collapse;width:100%}th,td{border:1px solid #999;padding:.4em;text-align:left}
th{background:#dde}audio{width:16em}"""


def render_status_page(server_id: str, mounts: Sequence[Stats]) -> bytes:
    """The page for `mounts` (public stats of each public mount, in listing order)."""
    rows = "".join(_row(stats) for stats in mounts) or (
        f'<tr><td colspan="{len(COLUMNS) + 1}">No mount is streaming.</td></tr>')
    headings = "".join(f"<th>{name}</th>" for name, _ in COLUMNS) + "<th>Listen</th>"
    title = _html(server_id)
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{_STYLE}</style></head><body><h1>{title}</h1>"
            f'<table id="mounts"><thead><tr>{headings}</tr></thead><tbody>{rows}</tbody>'
            "</table></body></html>\n").encode("utf-8")


def _html(value: str) -> str:
    return escape(display(value))


def _row(stats: Stats) -> str:
    path = urlsplit(stats["listenurl"]).path
    mount = _html(unquote(path, WIRE_ENCODING, WIRE_ERRORS))
    cells = "".join(f'<td class="{key}">{_html(stats.get(key, ""))}</td>' for _, key in COLUMNS)
    href = escape(path)
    player = (f'<a href="{href}">{mount}</a><br>'
              f'<audio controls preload="none" src="{href}"></audio>')
    return f'<tr class="mount" data-mount="{mount}">{cells}<td>{player}</td></tr>'
