"""A stand-in YP directory: a real HTTP server on 127.0.0.1 (port 0), in a thread, that
speaks dir.xiph.org's ``yp-cgi`` as its server did (github.com/xiph/Icecast-directory,
``controllers/yp-cgi.js``): it IS the peer under test for fanout's YP listing.

Every POST is recorded (``events``, in arrival order) and answered with headers only:
``YPResponse: 1|0``, ``YPMessage``, and for an add ``SID`` (a fresh UUID, or -1 when
refused) and ``TouchFreq``. An add needs ``sn``, ``type``, ``genre`` and ``listenurl``, a
``listenurl`` that is an http URL and a stream name that is not a placeholder; a touch or
remove needs a SID it handed out (and not removed). ``refuse_adds`` makes it refuse
every add, as a directory that banned the server would.
"""
from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote_plus, urlsplit

YP_PATH = "/cgi-bin/yp-cgi"
MANDATORY_ADD_FIELDS = ("sn", "type", "genre", "listenurl")
# Stream names the real directory refuses as a source client's untouched default.
PLACEHOLDER_NAMES = ("Unspecified name", "This is my server name", "Stream Name", "My Station name")
DEFAULT_TOUCH_FREQ = 200  # what dir.xiph.org's server answered to an add
# A body larger than this is not one of fanout's requests.
MAX_BODY = 65536


@dataclass
class YpEvent:
    """One request as the directory saw it."""

    action: str
    fields: dict[str, str]  # decoded form fields (the CRLF after the last one stripped)
    audio_info: dict[str, str]  # the bare trailing "k=v;k=v" field of an add, decoded
    user_agent: str | None
    body: bytes  # exactly as received
    ok: bool = False  # what it answered
    sid: str | None = None  # the SID it concerned (handed out, for an add)


@dataclass
class YpServer:
    touch_freq: int = DEFAULT_TOUCH_FREQ
    refuse_adds: bool = False
    events: list[YpEvent] = field(default_factory=list)
    listed: dict[str, dict[str, str]] = field(default_factory=dict)  # SID → the add's fields

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.http.daemon_threads = True
        self.port = self.http.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}{YP_PATH}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def of(self, action: str) -> list[YpEvent]:
        with self.lock:
            return [event for event in self.events if event.action == action]

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()

    # ---- the directory's logic ----------------------------------------------------------

    def answer(self, event: YpEvent) -> list[tuple[str, str]]:
        """Record ``event`` and return the headers to answer it with."""
        with self.lock:
            headers = {"add": self._add, "touch": self._touch, "remove": self._remove}.get(
                event.action, lambda e: None)(event)
            self.events.append(event)
        return headers or []

    def _add(self, event: YpEvent) -> list[tuple[str, str]]:
        problem = self._add_problem(event.fields)
        if problem is not None:
            return _result(False, problem, sid="-1")
        event.ok, event.sid = True, str(uuid.uuid4())
        self.listed[event.sid] = event.fields
        return _result(True, "Successfully Added", sid=event.sid, touch_freq=self.touch_freq)

    def _add_problem(self, fields: dict[str, str]) -> str | None:
        if self.refuse_adds:
            return "This server is banned"
        if any(name not in fields for name in MANDATORY_ADD_FIELDS):
            return "Not enough arguments"
        if urlsplit(fields["listenurl"]).scheme not in ("http", "https"):
            return "Not a real listenurl"
        if any(name in fields["sn"] for name in PLACEHOLDER_NAMES):
            return "Default stream name detected, please configure your source client, thanks!"
        return None

    def _touch(self, event: YpEvent) -> list[tuple[str, str]]:
        event.sid = event.fields.get("sid")
        if event.sid not in self.listed:
            return _result(False, "Server error", sid="-1")
        event.ok = True
        return _result(True, "Successfully touched")

    def _remove(self, event: YpEvent) -> list[tuple[str, str]]:
        event.sid = event.fields.get("sid")
        if self.listed.pop(event.sid or "", None) is None:
            return _result(False, "Could not find database entry")
        event.ok = True
        return _result(True, "Successfully removed")


def _result(ok: bool, message: str, sid: str | None = None,
            touch_freq: int | None = None) -> list[tuple[str, str]]:
    headers = [("YPResponse", "1" if ok else "0"), ("YPMessage", message)]
    if sid is not None:
        headers.append(("SID", sid))
    if touch_freq is not None:
        headers.append(("TouchFreq", str(touch_freq)))
    return headers


def parse_body(body: bytes) -> tuple[dict[str, str], dict[str, str]]:
    """(form fields, audio info) of a body, the way the real directory read Icecast's:
    the CRLF after the last field is dropped; a field without "=" is the audio info."""
    text = body.decode("latin-1").removesuffix("\r\n")
    fields: dict[str, str] = {}
    audio_info: dict[str, str] = {}
    for part in text.split("&"):
        if "=" in part:
            name, value = part.split("=", 1)
            fields[unquote_plus(name)] = unquote_plus(value, encoding="utf-8")
        elif part:
            for item in unquote_plus(part).split(";"):
                name, _, value = item.partition("=")
                audio_info[name] = value
    return fields, audio_info


def _handler_for(server: YpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(length, MAX_BODY))
            fields, audio_info = parse_body(body)
            event = YpEvent(fields.get("action", ""), fields, audio_info,
                            self.headers.get("User-Agent"), body)
            headers = server.answer(event) if self.path == YP_PATH else []
            self.send_response(200 if self.path == YP_PATH else 404)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # quiet
            return

    return Handler
