"""TLS for the bench's listener swarm (``--tls``): client-side TLS proxies.

Theory of operation. The compiled swarm (``_swarm.pyx``) speaks plain TCP; with
``--tls`` each server also listens on a TLS port and the swarm's listeners reach it
through ``TlsProxies``: ``processes`` children (``python -m fanout.bench.tlsproxy``),
sharing one plain listening port on loopback (SO_REUSEPORT), each a gevent loop that
opens a TLS connection to the server for every swarm connection (from the same source
address, so the swarm's spread over 127.0.0.x addresses holds) and copies bytes both
ways. The server does the TLS work of a real TLS listener; the proxies' decryption is
client work, outside the server's process tree, so it is not in the server's CPU figure
(it does load the same machine, as the swarm does). Certificates are not verified: the
bench's are self-signed, made by ``self_signed`` for both servers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

READY_TIMEOUT = 20.0  # s for the proxies to listen
COPY_SIZE = 65536  # bytes per recv while copying
BACKLOG = 4096  # the swarm opens thousands of connections at once


def self_signed(directory: Path, host: str) -> Path:
    """A self-signed certificate for `host`, with its key, in one PEM file (the form
    Icecast 2.4.4 reads from <ssl-certificate>); returns its path."""
    pem = directory / "bench-tls.pem"  # icecast.CERTIFICATE
    key = directory / "bench-tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(directory / "bench-tls.crt"), "-days", "2", "-subj", f"/CN={host}",
                    "-addext", f"subjectAltName=IP:{host}"],
                   check=True, capture_output=True)
    pem.write_bytes((directory / "bench-tls.crt").read_bytes() + key.read_bytes())
    return pem


class TlsProxies:
    """`processes` proxy children forwarding plain connections on `port` to the server's
    TLS port; `stop()` ends them."""

    def __init__(self, host: str, server_port: int, port: int, processes: int) -> None:
        self.host, self.port = host, port
        self.children = [subprocess.Popen(
            [sys.executable, "-m", "fanout.bench.tlsproxy", host, str(port), str(server_port)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
            for _ in range(max(1, processes))]
        deadline = time.monotonic() + READY_TIMEOUT
        for child in self.children:
            assert child.stdout is not None
            line = child.stdout.readline()  # blocks until the child listens (or dies)
            if line.strip() != "READY" or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"TLS proxy did not start: {line!r}")

    def stop(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.kill()
            child.wait()


def run(host: str, port: int, server_port: int) -> None:
    """One proxy process: serve until killed."""
    from gevent import monkey  # noqa: PLC0415  # only this child runs a hub
    monkey.patch_all()
    import socket  # noqa: PLC0415
    import ssl  # noqa: PLC0415

    import gevent  # noqa: PLC0415
    from gevent.server import StreamServer  # noqa: PLC0415

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE

    def copy(source: socket.socket, destination: socket.socket) -> None:
        try:
            while data := source.recv(COPY_SIZE):
                destination.sendall(data)
        except (OSError, ValueError):  # ValueError: the other direction closed the TLS socket
            pass
        finally:
            for sock in (source, destination):
                try:
                    sock.close()
                except OSError:
                    pass

    def handle(client: socket.socket, address: tuple[str, int]) -> None:
        raw = socket.socket()
        try:
            raw.bind((address[0], 0))
            raw.connect((host, server_port))
            tls = context.wrap_socket(raw, server_hostname=host)
        except OSError:
            raw.close()
            client.close()
            return
        gevent.spawn(copy, client, tls)
        copy(tls, client)

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind((host, port))
    listener.listen(BACKLOG)
    server = StreamServer(listener, handle)
    server.start()
    print("READY", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    run(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
