"""/health answers 200 while the worker serves and 503 once it is shutting down."""
from __future__ import annotations

import json
from types import SimpleNamespace

from gevent.event import Event

from fanout.config import Config
from fanout.worker import status


class RecordingConnection:
    def __init__(self) -> None:
        self.data = b""

    def send(self, data: bytes) -> None:
        self.data += data


def health_of(stopping: bool) -> tuple[bytes, dict]:
    worker = SimpleNamespace(config=Config(), cfg=Config(), mounts={}, stopping=Event())
    if stopping:
        worker.stopping.set()
    conn = RecordingConnection()
    status.serve_health(worker, conn, None, b"")
    head, _, body = conn.data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], json.loads(body)


def test_health_is_200_ok_while_serving():
    status_line, body = health_of(stopping=False)
    assert status_line == b"HTTP/1.0 200 OK"
    assert body["status"] == "ok"


def test_health_is_503_once_shutting_down():
    status_line, body = health_of(stopping=True)
    assert status_line == b"HTTP/1.0 503 Service Unavailable"
    assert body["status"] == "shutting_down"
