"""HTTP GETs against admin and status endpoints, answered as (status, headers, body)."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from tests.support.clients import basic, raw_request
from tests.support.server import ADMIN_PASSWORD
from tests.support.waiting import wait_for

ADMIN = basic("admin", ADMIN_PASSWORD)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def xml(self) -> ET.Element:
        return ET.fromstring(self.body)


def get(server, path: str, authorization: str | None = ADMIN) -> Answer:
    """GET `path` (with the admin's Basic credentials unless told otherwise)."""
    lines = [f"GET {path} HTTP/1.0", "User-Agent: fanout-admin-test"]
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    raw = raw_request(server.host, server.port, ("\r\n".join(lines) + "\r\n\r\n").encode())
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split()[1]), headers, body)


def listeners_on_every_worker(server, mount: str, workers: int = 2, most: int = 40) -> list:
    """Open listeners on `mount` until each of the `workers` workers holds at least one."""
    from tests.support.clients import Listener
    from tests.support.server import worker_of
    from tests.support.waiting import wait_for

    listeners, holders = [], set()
    while len(holders) < workers:
        assert len(listeners) < most, "the listeners all landed on too few workers"
        listener = Listener(server.host, server.port, mount).start()
        assert listener.head.startswith(b"HTTP/1.0 200"), listener.head
        listeners.append(listener)
        holders.add(wait_for(lambda: worker_of(server, listener.local_port), 5,
                             "the listener's worker").pid)
    return listeners


def wait_mount_gone(server, mount: str) -> None:  # type: ignore[no-untyped-def]
    """Wait until `mount` answers 404: its source's end reached the workers, so the
    supervisor released it first and a new source may claim it."""
    def gone() -> bool:
        answer = raw_request(server.host, server.port, f"GET {mount} HTTP/1.0\r\n\r\n".encode())
        return answer.startswith(b"HTTP/1.0 404")

    wait_for(gone, 10, f"{mount} to end")
