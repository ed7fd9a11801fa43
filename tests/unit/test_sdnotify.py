"""fanout.sdnotify speaks sd_notify(3) to a real AF_UNIX datagram socket standing in for systemd."""
from __future__ import annotations

import logging
import os
import secrets
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fanout import sdnotify

# How long a test waits for a datagram that should be there at once.
RECV_TIMEOUT = 5.0


class FakeManager:
    """The systemd end: a bound datagram socket collecting notifications."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(RECV_TIMEOUT)

    def receive(self) -> list[str]:
        return self.sock.recv(4096).decode().split("\n")

    def pending(self) -> bool:
        self.sock.setblocking(False)
        try:
            self.sock.recv(4096)
        except BlockingIOError:
            return False
        finally:
            self.sock.settimeout(RECV_TIMEOUT)
        return True


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # Short: an AF_UNIX path is limited to 107 bytes, and pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="sdn", dir="/tmp") as name:
        yield Path(name)


@pytest.fixture
def manager(socket_dir: Path) -> Iterator[tuple[FakeManager, sdnotify.Notifier]]:
    path = str(socket_dir / "notify")
    fake = FakeManager(path)
    yield fake, sdnotify.Notifier.from_environment({sdnotify.ENV_VAR: path})
    fake.sock.close()


def test_ready_names_the_main_pid(manager):
    fake, notifier = manager
    notifier.ready()
    assert fake.receive() == ["READY=1", f"MAINPID={os.getpid()}"]


def test_ready_is_sent_once_per_start(manager):
    fake, notifier = manager
    notifier.ready()
    notifier.ready()  # e.g. a replaced worker booted: systemd already knows
    fake.receive()
    assert not fake.pending()


def test_reload_is_bracketed_by_reloading_and_ready(manager):
    fake, notifier = manager
    notifier.ready()
    fake.receive()
    before = time.monotonic_ns() // 1000
    with notifier.reloading():
        reloading = fake.receive()
        assert not fake.pending()  # READY=1 only once the reload is done
    after = time.monotonic_ns() // 1000
    assert reloading[0] == "RELOADING=1"
    key, value = reloading[1].split("=")
    assert key == "MONOTONIC_USEC" and before <= int(value) <= after
    assert fake.receive() == ["READY=1", f"MAINPID={os.getpid()}"]


def test_ready_follows_a_reload_that_failed(manager):
    fake, notifier = manager
    with pytest.raises(RuntimeError):
        with notifier.reloading():
            raise RuntimeError("bad config")
    assert fake.receive()[0] == "RELOADING=1"
    assert fake.receive()[0] == "READY=1"


def test_stopping(manager):
    fake, notifier = manager
    notifier.stopping()
    assert fake.receive() == ["STOPPING=1"]


def test_abstract_socket_address():
    name = f"fanout-test-{secrets.token_hex(8)}"
    fake = FakeManager("\0" + name)
    try:
        sdnotify.Notifier.from_environment({sdnotify.ENV_VAR: "@" + name}).stopping()
        assert fake.receive() == ["STOPPING=1"]
    finally:
        fake.sock.close()


def test_without_notify_socket_nothing_is_sent():
    notifier = sdnotify.Notifier.from_environment({})
    assert notifier.address is None
    assert notifier.send("READY=1") is False
    notifier.ready()
    assert notifier.is_ready is False


def test_the_variable_is_not_passed_on_to_children(socket_dir):
    environ = {sdnotify.ENV_VAR: str(socket_dir / "notify"), "PATH": "/bin"}
    sdnotify.Notifier.from_environment(environ)
    assert environ == {"PATH": "/bin"}


def test_an_unusable_address_is_warned_and_ignored(caplog):
    with caplog.at_level(logging.WARNING, "fanout.sdnotify"):
        notifier = sdnotify.Notifier.from_environment({sdnotify.ENV_VAR: "vsock:2:1234"})
    assert notifier.address is None
    assert caplog.messages == ["NOTIFY_SOCKET='vsock:2:1234' is not an AF_UNIX address; "
                               "not notifying systemd"]


def test_a_failed_send_is_logged_not_raised(socket_dir, caplog):
    notifier = sdnotify.Notifier.from_environment({sdnotify.ENV_VAR: str(socket_dir / "gone")})
    with caplog.at_level(logging.WARNING, "fanout.sdnotify"):
        notifier.ready()
    assert notifier.is_ready is False  # so the next ready() tries again
    assert len(caplog.messages) == 1
    assert caplog.messages[0].startswith("cannot notify systemd (NOTIFY_SOCKET): ")
