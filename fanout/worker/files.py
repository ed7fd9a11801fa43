"""Files from the webroot: a GET (or HEAD) whose path names no live mount (§5.1 step 7).

Theory of operation (2.4.4 ``src/fserve.c``): with ``<fileserve>`` on and a
``<paths><webroot>``, the path names a file under the webroot; the pure rules (which
names are safe, which type, which bytes, which head) are `fanout.protocol.webroot`'s.
Here is the IO: the name is resolved (``realpath``) and served only if it stays inside
the webroot (a symlink may point anywhere) and is a regular file, opened once and answered
from that one descriptor (its size and mtime from ``fstat``). The body goes out with
``sendfile`` on the non-blocking socket, waiting in the hub whenever the socket is full,
so a large file costs the worker neither a thread nor a copy; a client that does not
take a byte for FILE_SEND_TIMEOUT s is dropped.

The types come from ``<mime-types>`` (a mime.types file), read once per config, with
2.4.4's few built-in types for what the file does not name.
"""
from __future__ import annotations

import logging
import os
import stat
import time
from typing import Mapping

import gevent
from gevent.socket import wait_write

from fanout.config import Config
from fanout.protocol.errors import ProtocolError
from fanout.protocol.http import Request
from fanout.protocol.webroot import (
    ByteRange, content_type, inside_webroot, parse_mime_types, plan_range, render_file_head,
    render_range_refusal, webroot_file,
)
from fanout.worker.client import Connection
from fanout.worker.state import Worker

log = logging.getLogger("fanout.files")

NOT_FOUND = "The file you requested could not be found"  # 2.4.4's 404 text
# Seconds one write to a file client may wait for room in its socket before it is dropped.
FILE_SEND_TIMEOUT = 30.0
# Bytes per sendfile call: the hub gets a turn between two, so a fast client of a large
# file does not hold up the worker's other clients.
SENDFILE_CHUNK = 256 * 1024
# A mime.types file larger than this is not one (Debian's is 74 KB): it is not read.
MAX_MIME_TYPES_BYTES = 1024 * 1024


def serve_file(worker: Worker, conn: Connection, request: Request) -> None:
    """Answer `request` with the webroot file its path names. Raises ProtocolError: 404
    when files are not served, or there is no such regular file inside the webroot; 400
    for a path 2.4.4 would not normalise."""
    config = worker.cfg
    webroot = config.paths.webroot
    if not config.fileserve or webroot is None:
        raise ProtocolError(NOT_FOUND, 404)
    name = webroot_file(webroot, request.path)
    fd = open_inside(webroot, name)
    try:
        answer_file(conn, request, fd, content_type(name, MIME_TYPES.of(config)), config)
    finally:
        os.close(fd)


def open_inside(webroot: str, name: str) -> int:
    """A descriptor of the regular file `name` if it resolves inside `webroot`; raises
    ProtocolError 404 otherwise."""
    real = os.path.realpath(name)
    if not inside_webroot(os.path.realpath(webroot), real):
        raise ProtocolError(NOT_FOUND, 404)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        raise ProtocolError(NOT_FOUND, 404) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ProtocolError(NOT_FOUND, 404)
    return fd


def answer_file(conn: Connection, request: Request, fd: int, file_type: str,
                config: Config) -> None:
    """The head (200, 206 or 416) and, for a GET, the bytes asked for."""
    info = os.fstat(fd)
    size, now = info.st_size, time.time()
    try:
        part = plan_range(request.header("range"), size)
    except ProtocolError:  # 416: wholly past the end
        conn.send(render_range_refusal(size, server_id=config.server_id, now=now,
                                       extra_headers=extra_headers(config, 416)))
        return
    status = 200 if part is None else 206
    conn.send(render_file_head(part, size, file_type, info.st_mtime, server_id=config.server_id,
                               now=now, extra_headers=extra_headers(config, status)))
    if request.method == "GET":
        whole = ByteRange(0, size - 1, size)
        send_file(conn, fd, part or whole)


def extra_headers(config: Config, status: int) -> list[tuple[str, str]]:
    """The global <http-headers> for an answer of `status`."""
    return [(h.name, h.value) for h in config.http_headers if h.status in (None, status)]


def send_file(conn: Connection, fd: int, part: ByteRange) -> None:
    """Send the bytes of `part` from `fd` with sendfile, cooperatively. Raises
    ProtocolError(…, 0) when the client takes nothing for FILE_SEND_TIMEOUT s, and
    ConnectionError (BrokenPipeError, ConnectionResetError) when it went away."""
    sock_fd, offset, left = conn.sock.fileno(), part.start, part.length
    while left > 0:
        try:
            sent = os.sendfile(sock_fd, fd, offset, min(left, SENDFILE_CHUNK))
        except BlockingIOError:
            wait_write(sock_fd, timeout=FILE_SEND_TIMEOUT,
                       timeout_exc=ProtocolError(f"file client took nothing for "
                                                 f"{FILE_SEND_TIMEOUT:g}s", 0))
            continue
        if sent == 0:  # the file shrank under us: the client gets less than announced
            return
        offset, left = offset + sent, left - sent
        conn.sent += sent
        gevent.sleep(0)


class MimeTypes:
    """The types of the running config's mime.types file, read once per config.

    One per worker process (``MIME_TYPES``): a cache of a file the config names, like
    the htpasswd files, not state of the worker's clients.
    """

    def __init__(self) -> None:
        self.config: Config | None = None
        self.types: Mapping[str, str] = {}

    def of(self, config: Config) -> Mapping[str, str]:
        if config is not self.config:
            self.config, self.types = config, read_mime_types(config.mime_types)
        return self.types


def read_mime_types(path: str) -> Mapping[str, str]:
    """The types a mime.types file names ({} with one log line if it cannot be read:
    2.4.4's built-in types then apply alone)."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_MIME_TYPES_BYTES + 1)
    except OSError as exc:
        log.warning("cannot read the mime types file %s: %s", path, exc.strerror)
        return {}
    if len(data) > MAX_MIME_TYPES_BYTES:
        log.warning("the mime types file %s is over %d bytes: not read", path, MAX_MIME_TYPES_BYTES)
        return {}
    return parse_mime_types(data.decode("latin-1"))


MIME_TYPES = MimeTypes()
