"""Tell systemd how the server is doing: sd_notify(3) for `Type=notify` units, stdlib only.

systemd names an AF_UNIX datagram socket in $NOTIFY_SOCKET; each notification is one
datagram of newline-separated `KEY=VALUE` lines. The supervisor reports READY=1 (with
MAINPID) once every worker has booted, RELOADING=1 … READY=1 around a SIGHUP reload and
STOPPING=1 when it starts to shut down (packaging/fanout.service).

Without $NOTIFY_SOCKET (not run by systemd, or a unit of another Type=) every call is a
no-op, so callers never ask. A notification that cannot be sent is logged and dropped:
losing one must not take the server down (systemd then times the start out, and says so).
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterator, MutableMapping

log = logging.getLogger("fanout.sdnotify")

# The environment variable systemd sets for Type=notify services.
ENV_VAR = "NOTIFY_SOCKET"
# systemd reads its notify socket at once; a stuck manager must not stall the hub longer.
SEND_TIMEOUT = 2.0


def socket_address(value: str) -> str | None:
    """The AF_UNIX address $NOTIFY_SOCKET names: a path, or `@name` for the abstract
    namespace (as sd_notify(3) reads it); None for anything else (e.g. a vsock address)."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    return None


def datagram(*assignments: str) -> bytes:
    """One notification: the assignments, one per line."""
    return "\n".join(assignments).encode()


class Notifier:
    """The supervisor's line to systemd. READY=1 is sent once per start or reload, so the
    caller may report readiness whenever it sees every worker booted (also after replacing
    a dead one)."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self.is_ready = False

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] = os.environ) -> Notifier:
        """The notifier $NOTIFY_SOCKET asks for, removing the variable from `environ` so
        that processes we start (workers, scripts) do not speak for us."""
        value = environ.pop(ENV_VAR, "")
        address = socket_address(value) if value else None
        if value and address is None:
            log.warning("%s=%r is not an AF_UNIX address; not notifying systemd", ENV_VAR, value)
        return cls(address)

    def send(self, *assignments: str) -> bool:
        """Send one notification; True if it was sent, False if there is no socket or the
        send failed (logged)."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(SEND_TIMEOUT)
                sock.sendto(datagram(*assignments), self.address)
        except OSError as exc:
            log.warning("cannot notify systemd (%s): %s", ENV_VAR, exc)
            return False
        return True

    def ready(self) -> None:
        """Every worker serves: READY=1, naming this process as the one to signal."""
        if not self.is_ready:
            self.is_ready = self.send("READY=1", f"MAINPID={os.getpid()}")

    @contextlib.contextmanager
    def reloading(self) -> Iterator[None]:
        """Bracket a reload: RELOADING=1 now, READY=1 when the block ends, however it ends.
        MONOTONIC_USEC (the clock systemd uses) tells systemd which reload this is."""
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        self.is_ready = False
        try:
            yield
        finally:
            self.ready()

    def stopping(self) -> None:
        """The server is shutting down: systemd shows `deactivating` instead of a crash."""
        self.send("STOPPING=1")
