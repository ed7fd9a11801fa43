"""`/<mount>.m3u` and `/<mount>.xspf`: the playlists Icecast 2.4.4 generates (§5.1 step 7).

What Icecast sends, checked against a running icecast2 (tests/integration/
test_playlists_icecast.py):

- ``.m3u``: ``Content-Type: audio/x-mpegurl`` and one line, ``http://<authority><mount>``
  then CRLF. The authority is the request's ``Host`` header when it carries a port, else
  ``<hostname>:<port>`` from the config (fb2k and Winamp send a Host without the port; a
  portless Host is taken to be one of those). The query is dropped.
- ``.xspf``: ``Content-Type: application/xspf+xml; charset=UTF-8``, the document its
  ``xspf.xsl`` makes of the mount's public stats, as libxml2 indents it (``render_xspf``
  writes that layout directly; there is no XSLT here).

Where we differ, on purpose:

- Icecast writes a playlist for any name, hidden mounts and absent ones included (an
  empty ``trackList`` for the XSPF). We answer only for live public mounts and 404 every
  other name alike, so a hidden mount cannot be told from one that does not exist.
- Icecast's XSPF ``location`` is the stats' ``listenurl`` (always ``<hostname>:<port>``)
  while its M3U honours ``Host``. Both of ours hold the same ``listen_url``; with no Host,
  or a Host naming ``<hostname>:<port>``, that is Icecast's document byte for byte.
- Only a well-formed ``host:port`` Host is taken: anything else (userinfo, a path, spaces)
  falls back to the config, so no request can put credentials or markup into a playlist.
- ``scheme`` lets a caller that trusts a proxy's ``X-Forwarded-Proto`` say "https"; then a
  portless Host is taken as it stands (the scheme's default port is the proxy's).

Every text is shown with ``text.display``; the mount goes into URLs as ``text.url_path``.
"""
from __future__ import annotations

import re
from typing import Collection, Sequence
from xml.sax.saxutils import escape

from fanout.protocol.stats import Stats
from fanout.protocol.text import display, url_path

M3U, XSPF = "m3u", "xspf"
CONTENT_TYPES = {M3U: "audio/x-mpegurl", XSPF: "application/xspf+xml; charset=UTF-8"}
SCHEMES = ("http", "https")
# host:port as a browser or player sends it: a DNS name or IPv4 address, or a bracketed
# IPv6 address, then a port. Nothing else (no "user@", no path) is taken from Host.
_AUTHORITY = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]{1,5})?")
_XSPF_HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n'
              '<playlist xmlns="http://xspf.org/ns/0/" version="1">\n'
              "  <title/>\n  <creator/>\n")
# xspf.xsl's annotation lines after "Content Type:": stats key -> label, in its order.
_ANNOTATED = (("bitrate", "Bitrate"), ("quality", "Quality"), ("video_quality", "Video Quality"),
              ("frame_size", "Framesize"), ("frame_rate", "Framerate"),
              ("listeners", "Current Listeners"), ("listener_peak", "Peak Listeners"))


def is_playlist_path(path: str) -> bool:
    """Whether ``path`` has a playlist's name (``playlist_request`` says of which mount)."""
    return path.endswith(tuple("." + kind for kind in CONTENT_TYPES))


def playlist_request(path: str, public_mounts: Collection[str]) -> tuple[str, str] | None:
    """(mount, M3U or XSPF) when ``path`` is the playlist of a live public mount, else None
    (answer 404). Call it only once ``path`` turned out not to be a live mount itself:
    a mount named "/a.m3u" is streamed, as in Icecast."""
    for kind in (M3U, XSPF):
        suffix = "." + kind
        if path.endswith(suffix) and path[:-len(suffix)] in public_mounts:
            return path[:-len(suffix)], kind
    return None


def listen_url(mount: str, host_header: str | None, hostname: str, port: int,
               scheme: str = "http") -> str:
    """The URL a playlist points at (see the module doc for the Host rule)."""
    if scheme not in SCHEMES:
        raise ValueError(f"not a listening scheme: {scheme!r}")
    authority = f"{hostname}:{port}"
    if host_header is not None and _AUTHORITY.fullmatch(host_header):
        if ":" in host_header.rsplit("]", 1)[-1] or scheme != "http":
            authority = host_header
    return f"{scheme}://{authority}{url_path(mount)}"


def render_m3u(url: str) -> bytes:
    """The .m3u body: the URL and CRLF, as 2.4.4's fserve writes it."""
    return (display(url) + "\r\n").encode("utf-8")


def render_xspf(tracks: Sequence[tuple[str, Stats]]) -> bytes:
    """The .xspf body for (location, public stats) of each mount (Icecast: one or none)."""
    if not tracks:
        return (_XSPF_HEAD + "  <trackList/>\n</playlist>\n").encode("utf-8")
    listed = "".join(_track(location, stats) for location, stats in tracks)
    return (_XSPF_HEAD + f"  <trackList>\n{listed}  </trackList>\n</playlist>\n").encode("utf-8")


def render_playlist(kind: str, url: str, stats: Stats) -> tuple[str, bytes]:
    """(Content-Type, body) of the playlist ``kind`` for one mount."""
    body = render_m3u(url) if kind == M3U else render_xspf([(url, stats)])
    return CONTENT_TYPES[kind], body


def _element(name: str, shown: str) -> str:
    """An element of text already shown with ``display``; empty: ``<name/>``, as libxml2."""
    text = escape(shown)
    return f"<{name}>{text}</{name}>" if text else f"<{name}/>"


def _track(location: str, stats: Stats) -> str:
    shown = {key: display(value) for key, value in stats.items()}
    lines = [_element("location", display(location))]
    if "artist" in shown:
        lines.append(_element("creator", shown["artist"]))
    lines += [_element("title", shown.get("title", "")),
              _element("annotation", _annotation(shown))]
    if "server_url" in shown:
        lines.append(_element("info", shown["server_url"]))
    inner = "".join(f"      {line}\n" for line in lines)
    return f"    <track>\n{inner}    </track>\n"


def _annotation(stats: Stats) -> str:
    # `stats` are already shown (display), so the only line breaks are these: xspf.xsl's
    # text exactly. Its whitespace-only text nodes are dropped, its "\nContent Type:" node
    # is not, so a stream without a description gets an empty line there.
    text = ""
    if "server_name" in stats:
        text += f"Stream Title: {stats['server_name']}\n"
    if "server_description" in stats:
        text += f"Stream Description: {stats['server_description']}"
    text += f"\nContent Type:{stats.get('server_type', '')}\n"
    text += "".join(f"{label}: {stats[key]}\n" for key, label in _ANNOTATED if key in stats)
    if "genre" in stats:
        text += f"Stream Genre: {stats['genre']}"
    return text
