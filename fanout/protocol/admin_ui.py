"""The admin UI at `/admin/`: server-rendered HTML over Icecast's own admin commands.

Pages follow Icecast 2.4.4's `.xsl` names (``admin_page``), so its bookmarks work:
`/admin/`, `stats.xsl` and `listmounts.xsl` are the overview (server, every mount with
hidden ones marked, relays, the slave table); `listclients.xsl`, `updatemetadata.xsl` and
`moveclients.xsl` without a destination are a mount's page (its listeners, each with a
Kick button, and its forms); the acting commands as `.xsl` (`metadata.xsl`,
`killsource.xsl`, `killclient.xsl`, `moveclients.xsl` with a destination) answer with a
result page instead of XML. Each page links the XML/text answer of every command.

Forms work without JavaScript and change state only by POST (Icecast's own pages use
GET links). What names a mount or a client travels in the form's action URL, percent-
encoded exactly as a mount's bytes are (a form field could only carry Unicode, and a
mount name may be any bytes); the body carries only what a person types (``song``), read
by ``parse_form``. The metadata form says ``charset=UTF-8``: the page is UTF-8, and
`/admin/metadata` recodes from it into the mount's ``<charset>`` (Icecast's form does too).

Cross-site requests: Icecast has no defence, and a browser sends the admin's Basic
credentials with any request to the server, so a page elsewhere could kill a source with
one `<img>`. Every command that changes state (``changes_state``, by GET or POST) is
refused when ``is_cross_site`` says a browser sent it from another site
(``check_same_origin``). Encoders and scripts send none of the headers a browser adds,
and keep working.

Every value from a source, a listener or an upstream is shown with ``text.display`` and
escaped; pages are valid UTF-8.
"""
from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Collection, Mapping, Protocol, Sequence
from urllib.parse import parse_qsl, quote_from_bytes, urlsplit

from fanout.protocol.errors import ProtocolError
from fanout.protocol.http import Request
from fanout.protocol.identity import COMPATIBLE_WITH, product_name
from fanout.protocol.responses import Header
from fanout.protocol.stats import Stats
from fanout.protocol.stats_xml import ListedClient
from fanout.protocol.status_page import bitrate_text, codec_name, html_text, now_playing
from fanout.protocol.text import display, to_wire
from fanout.protocol.web_assets import ADMIN_STYLE, PAGE_STYLE

HTML_TYPE = "text/html; charset=utf-8"
FORM_TYPE = "application/x-www-form-urlencoded"
# Largest form body read (bytes): a song title (an ICY block holds 4080) percent-encoded
# three times over, with room to spare; a longer body is refused with 413, unread.
MAX_FORM_BYTES = 16384
CROSS_SITE_MESSAGE = "Cross-site request refused"
# Sent with every admin page: no framing by other sites (clickjacking the forms), no
# admin URL in a Referer to another site, no guessing types.
ADMIN_HEADERS: tuple[Header, ...] = (("X-Frame-Options", "DENY"),
                                     ("Referrer-Policy", "same-origin"),
                                     ("X-Content-Type-Options", "nosniff"))
OVERVIEW, MOUNT_PAGE, RESULT = "overview", "mount", "result"
# Sec-Fetch-Site values of a request the admin's own pages (or the address bar) made.
SAME_ORIGIN_SITES = frozenset({"same-origin", "none"})
_DEFAULT_PORTS = {"http": "80", "https": "443"}
# Commands that always act; moveclients acts with a destination, manageauth with these.
_ACTING = frozenset({"metadata", "killsource", "killclient", "fallbacks"})
_AUTH_ACTIONS = frozenset({b"add", b"delete"})
# Global figures the overview shows: stats key -> label.
_SERVER_FIELDS = (("server_id", "Server"), ("host", "Host name"), ("location", "Location"),
                  ("admin", "Contact"), ("server_start", "Started"),
                  ("clients", "Clients now"), ("listeners", "Listeners now"),
                  ("sources", "Sources now"), ("connections", "Connections"))
_RAW_GLOBAL = (("/admin/stats", "stats"), ("/admin/listmounts", "listmounts"),
               ("/admin/streamlist.txt", "streamlist.txt (relay login)"),
               ("/status-json.xsl", "status-json.xsl"), ("/metrics", "metrics"))


@dataclass(frozen=True, slots=True)
class SlaveRow:
    """One redirect target as the admin sees it."""

    host: str
    port: int
    expires_in: float | None  # seconds left; None: a static <redirect>, never expires
    load: str | None = None  # what the slave reported, if anything


class Target(Protocol):
    """What ``redirects.Target`` offers (this layer may not import it)."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def expires(self) -> float | None: ...


def slave_rows(targets: Sequence[Target], now: float,
               loads: Mapping[tuple[str, int], str] | None = None) -> list[SlaveRow]:
    """Rows for ``redirects.RedirectTable.targets()`` at monotonic time ``now``."""
    loads = loads or {}
    return [SlaveRow(t.host, t.port, None if t.expires is None else t.expires - now,
                     loads.get((t.host, t.port))) for t in targets]


# --- routing and safety ------------------------------------------------------------------


def admin_page(command: str, params: Mapping[str, bytes]) -> str | None:
    """Which page answers `/admin/<command>` as HTML: OVERVIEW, MOUNT_PAGE, RESULT, or
    None (not an HTML command: the XML/text command of that name answers)."""
    if command in ("", "stats.xsl", "listmounts.xsl"):
        return OVERVIEW
    if command in ("listclients.xsl", "updatemetadata.xsl"):
        return MOUNT_PAGE
    if command == "moveclients.xsl":
        return RESULT if "destination" in params else MOUNT_PAGE
    if command.endswith(".xsl") and changes_state(command, params):
        return RESULT
    return None


def changes_state(command: str, params: Mapping[str, bytes]) -> bool:
    """Whether `/admin/<command>` with ``params`` changes anything (the XML and the `.xsl`
    names alike)."""
    name = command.removesuffix(".xsl")
    if name == "moveclients":
        return "destination" in params
    if name == "manageauth":
        return params.get("action") in _AUTH_ACTIONS
    return name in _ACTING


def is_cross_site(request: Request) -> bool:
    """True when a browser sent ``request`` from a page of another site.

    Decided by ``Sec-Fetch-Site`` when present (every current browser sends it), else by
    ``Origin``, else by ``Referer``, each compared with ``Host``; a request with none of
    them is no browser's cross-site request (an encoder, curl, a script)."""
    site = request.header("sec-fetch-site")
    if site is not None:
        return site.lower() not in SAME_ORIGIN_SITES
    for name in ("origin", "referer"):
        value = request.header(name)
        if value is not None:
            return not _same_authority(value, request.header("host"))
    return False


def check_same_origin(request: Request, command: str, params: Mapping[str, bytes]) -> None:
    """Raise ProtocolError(CROSS_SITE_MESSAGE, 403) for a cross-site state change."""
    if changes_state(command, params) and is_cross_site(request):
        raise ProtocolError(CROSS_SITE_MESSAGE, 403)


def _same_authority(url: str, host: str | None) -> bool:
    parts = urlsplit(url)
    if host is None or parts.scheme not in _DEFAULT_PORTS or not parts.netloc:
        return False  # "null" (a sandboxed or file: page), or nothing to compare with
    default = _DEFAULT_PORTS[parts.scheme]
    return _strip_port(parts.netloc, default) == _strip_port(host, default)


def _strip_port(authority: str, default: str) -> str:
    authority = authority.lower()
    return authority.removesuffix(":" + default)


def parse_form(body: bytes) -> dict[str, bytes]:
    """An urlencoded form body as name -> exact bytes, the first value of a name winning
    (as ``admin.raw_query`` reads a query). The caller merges it under the query:
    ``{**parse_form(body), **raw_query(request)}``."""
    pairs = parse_qsl(body.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
    values: dict[str, bytes] = {}
    for key, value in pairs:
        values.setdefault(key, value.encode("latin-1"))
    return values


# --- pages ---------------------------------------------------------------------------------


def render_admin_overview(server: Stats, mounts: Sequence[tuple[str, Stats]],
                          hidden: Collection[str], slaves: Sequence[SlaveRow], *,
                          version: str = "") -> bytes:
    """`/admin/`: ``server`` is ``stats.global_stats``; ``mounts`` (name, full stats) of
    every live mount, hidden ones (named in ``hidden``) included; ``slaves`` the redirect
    table."""
    names = [name for name, _ in mounts]
    rows = "".join(_mount_row(name, stats, name in hidden, names) for name, stats in mounts)
    body = (f"<h2>Server</h2>{_server_list(server)}"
            f"<h2>Mounts</h2>{_table(_MOUNT_COLUMNS, rows, 'No mount is live.', 'mounts')}"
            f"<h2>Relays</h2>{_relay_table(mounts)}"
            f"<h2>Slaves (redirect targets)</h2>{_slave_table(slaves)}")
    return _page("Administration", server.get("server_id", ""), body, version)


def render_admin_mount(name: str, stats: Stats, clients: Sequence[ListedClient],
                       mounts: Sequence[str], *, version: str = "") -> bytes:
    """A mount's page: its figures, forms and listeners. ``mounts``: every live mount
    (the move form offers the others)."""
    listeners = "".join(_client_row(name, client) for client in clients)
    body = (f'<h2>Mount <span class="mount">{html_text(name)}</span></h2>'
            f"<p>{html_text(stats.get('server_name', ''))} · {html_text(codec_name(stats))} "
            f"{html_text(bitrate_text(stats))} · now playing: "
            f'<span class="title">{html_text(now_playing(stats))}</span></p>'
            f"{_mount_actions(name, mounts)}"
            f'<p class="raw">{_raw_links(name, stats)}</p>'
            f"<h2>Listeners ({len(clients)})</h2>"
            f"{_table(_CLIENT_COLUMNS, listeners, 'No listener.', 'listeners')}")
    return _page(f"Mount {display(name)}", "", body, version)


def render_admin_result(message: str, ok: bool, back: str = "/admin/", *,
                        version: str = "") -> bytes:
    """What an acting `.xsl` command answers: its message and the way back."""
    state = "ok" if ok else "failed"
    body = (f'<p class="result {state}">{html_text(message)}</p>'
            f'<p><a class="back" href="{escape(back)}">Back</a></p>')
    return _page("Done" if ok else "Not done", "", body, version)


def duration_text(seconds: float) -> str:
    """"2 h 05 min", "3 min 07 s", "42 s"."""
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


# --- pieces --------------------------------------------------------------------------------

_MOUNT_COLUMNS = ("Mount", "Stream", "Now playing", "Listeners", "Source", "Actions", "XML")
_CLIENT_COLUMNS = ("ID", "Address", "Player", "Connected", "")


def _query(**params: str) -> str:
    """A query string carrying each value's exact bytes (``text.to_wire``)."""
    return "&".join(f"{key}={quote_from_bytes(to_wire(value), safe='/')}"
                    for key, value in params.items())


def _command_url(command: str, **params: str) -> str:
    """`/admin/<command>?<params>`, escaped for an HTML attribute."""
    return escape(f"/admin/{command}?{_query(**params)}")


def mount_page_url(name: str) -> str:
    """The URL of mount `name`'s page (not escaped: ``render_admin_result`` escapes it)."""
    return f"/admin/listclients.xsl?{_query(mount=name)}"


def _page(heading: str, server_id: str, body: str, version: str) -> bytes:
    title = escape(display(f"{heading} · {server_id}" if server_id else heading))
    nav = ('<nav class="admin"><a href="/admin/">Overview</a><a href="/">Status page</a>'
           + "".join(f'<a href="{url}">{label}</a>' for url, label in _RAW_GLOBAL) + "</nav>")
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{title}</title><style>{PAGE_STYLE}{ADMIN_STYLE}</style></head><body>"
            f'<header class="top"><h1>{title}</h1></header>{nav}<main>{body}</main>'
            f"<footer>{escape(product_name(version))}, compatible with {COMPATIBLE_WITH}."
            "</footer></body></html>\n").encode("utf-8")


def _table(columns: Sequence[str], rows: str, none: str, table_id: str) -> str:
    headings = "".join(f"<th>{name}</th>" for name in columns)
    rows = rows or f'<tr class="none"><td colspan="{len(columns)}">{none}</td></tr>'
    return (f'<table id="{table_id}"><thead><tr>{headings}</tr></thead>'
            f"<tbody>{rows}</tbody></table>")


def _server_list(server: Stats) -> str:
    items = "".join(f'<dt>{label}</dt><dd class="{key}">{html_text(server[key])}</dd>'
                    for key, label in _SERVER_FIELDS if key in server)
    return f'<dl class="server">{items}</dl>'


def _mount_row(name: str, stats: Stats, hidden: bool, names: Sequence[str]) -> str:
    badge = ' <span class="badge">hidden</span>' if hidden else ""
    page = _command_url("listclients.xsl", mount=name)
    server_name = html_text(stats.get("server_name", ""))
    cells = (
        ("mount", f'<a href="{page}">{html_text(name)}</a>{badge}'),
        ("stream", f'<span class="server_name">{server_name}</span><br>'
                   f"{html_text(codec_name(stats))} {html_text(bitrate_text(stats))}"),
        ("title", html_text(now_playing(stats))),
        ("audience", f'<span class="listeners">{html_text(stats.get("listeners", ""))}</span>'
                     f" (peak {html_text(stats.get('listener_peak', ''))},"
                     f" max {html_text(stats.get('max_listeners', ''))})"),
        ("source", _source_text(stats)),
        ("actions", _mount_actions(name, names)),
        ("raw", _raw_links(name, stats)),
    )
    body = "".join(f'<td class="{cls}">{content}</td>' for cls, content in cells)
    return f'<tr class="mount" data-mount="{html_text(name)}">{body}</tr>'


def _source_text(stats: Stats) -> str:
    if "relay_upstream" in stats:
        return f"relay from {html_text(stats['relay_upstream'])}"
    return "<br>".join([html_text(stats.get("source_ip", "")),
                        html_text(stats.get("user_agent", "")),
                        "since " + html_text(stats.get("stream_start", ""))])


def _mount_actions(name: str, names: Sequence[str]) -> str:
    update = _command_url("metadata.xsl", mount=name, mode="updinfo", charset="UTF-8")
    metadata = (f'<form class="action metadata" method="post" accept-charset="UTF-8"'
                f' action="{update}"><input type="text" name="song" aria-label="Now playing"'
                ' placeholder="Artist - Title"> <button>Set title</button></form>')
    others = [other for other in names if other != name]
    moves = "".join(
        f'<button formaction="{_command_url("moveclients.xsl", mount=name, destination=other)}">'
        f"{html_text(other)}</button> " for other in others)
    move = (f'<form class="action move" method="post">Move listeners to {moves}</form>'
            if others else "")
    kill = (f'<form class="action kill" method="post"'
            f' action="{_command_url("killsource.xsl", mount=name)}">'
            '<button class="danger">Kill source</button></form>')
    return metadata + move + kill


def _raw_links(name: str, stats: Stats) -> str:
    commands = ["stats", "listclients", "moveclients"]
    if "authenticator" in stats:
        commands.append("manageauth")
    return "".join(f'<a href="{_command_url(command, mount=name)}">{command}</a> '
                   for command in commands)


def _relay_table(mounts: Sequence[tuple[str, Stats]]) -> str:
    rows = "".join(
        f'<tr class="relay" data-mount="{html_text(name)}"><td>{html_text(name)}</td>'
        f'<td>{html_text(stats["relay_upstream"])}</td>'
        f'<td class="state">{html_text(stats.get("relay_state", ""))}</td>'
        f'<td>{html_text(stats.get("relay_reconnects", ""))}</td>'
        f'<td>{html_text(stats.get("relay_bytes_read", ""))}</td></tr>'
        for name, stats in mounts if "relay_upstream" in stats)
    return _table(("Mount", "Upstream", "State", "Reconnects", "Bytes read"), rows,
                  "No relay is running.", "relays")


def _slave_table(slaves: Sequence[SlaveRow]) -> str:
    rows = "".join(
        f'<tr class="slave"><td>{html_text(s.host)}</td><td>{s.port}</td>'
        f"<td>{_expiry(s.expires_in)}</td>"
        f"<td>{'—' if s.load is None else html_text(s.load)}</td></tr>" for s in slaves)
    return _table(("Host", "Port", "Expires", "Load"), rows, "No slave is registered.", "slaves")


def _expiry(seconds: float | None) -> str:
    return "never (configured)" if seconds is None else "in " + duration_text(seconds)


def _client_row(mount: str, client: ListedClient) -> str:
    kick = (f'<form class="inline" method="post"'
            f' action="{_command_url("killclient.xsl", mount=mount, id=str(client.id))}">'
            '<button class="danger">Kick</button></form>')
    cells = (str(client.id), html_text(client.ip), html_text(client.user_agent or "Unknown"),
             duration_text(client.connected), kick)
    body = "".join(f"<td>{cell}</td>" for cell in cells)
    return f'<tr class="listener" data-id="{client.id}">{body}</tr>'
