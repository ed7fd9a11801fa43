"""TLS for clients (listeners, sources, admin) and for upstreams (issue 12 §4). gevent IO.

Theory of operation. Listeners are fed by the compiled sender (`send_many`): one plain
`sendmsg` per listener per pass on the listener's fd, with no Python call per listener.
TLS must not change that, so a TLS listener is handed to the sender in one of two ways,
decided per connection after its handshake (`sender_fd`):

1. Kernel TLS (kTLS). The server context sets OpenSSL 3's SSL_OP_ENABLE_KTLS (Python
   3.11 has no name for the bit; the option setter takes it). When the kernel has the
   `tls` module and the negotiated cipher is one it implements (AES-GCM, ChaCha20-Poly1305;
   TLS 1.2 or 1.3), OpenSSL hands the transmit keys to the socket at the end of the
   handshake, and every later plain `write`/`sendmsg` on the fd goes out as TLS records
   encrypted by the kernel. `ktls_tx` asks the socket itself (getsockopt SOL_TLS/TLS_TX)
   whether that happened. The listener's fd then goes into `send_many` exactly as a
   plain one: same syscall count, the crypto in the kernel, nothing in Python.
   Needs: Debian 12's libssl3 (built with kTLS: no OPENSSL_NO_KTLS in its
   configuration.h, "Enable ktls" in its changelog) and `modprobe tls` (CONFIG_TLS=m in
   Debian's kernels). Receiving stays in OpenSSL (3.0 has no TLS 1.3 kTLS receive), which
   is all a listener needs: it only sends.
2. The bridge (fallback, slower). Without kTLS for a connection, the sender writes the
   plaintext into one end of an AF_UNIX socketpair (`Bridge.fd`, a plain fd like any
   other in `send_many`, so ICY interleaving, lag limits and lapping are unchanged) and
   a greenlet per TLS listener copies it into the SSL socket. Cost: a recv and an
   SSL_write (one Python-level call each) per listener per pass that had data, plus the
   socketpair copy; the backpressure is the socketpair's buffer (BRIDGE_BUFFER), after
   which `send_many` sees EAGAIN and the usual lag rules apply.

Certificates: `server_context` reads `<paths><ssl-certificate>` (chain, and the key unless
`<ssl-private-key>` names its file) and `<ssl-allowed-ciphers>`; `ServerTls.reload` (on
SIGHUP) builds a new context and swaps it only if it loaded, so a bad file keeps the
running certificate; established connections keep the context they shook hands with.
Upstreams: `client_context` verifies the upstream's certificate and host name by default
(system CAs, or only `<ssl-upstream-cafile>`, which also pins a leaf certificate), or
not at all with `<ssl-upstream-verify>0` (what Icecast-KH does).
"""
from __future__ import annotations

import errno
import socket as stdlib_socket
import ssl
import struct
from pathlib import Path

import gevent
import gevent.ssl
from gevent import socket

from fanout.config import Paths

# OpenSSL 3's SSL_OP_ENABLE_KTLS (ssl.h: SSL_OP_BIT(3)); Python 3.11's ssl has no name for it.
SSL_OP_ENABLE_KTLS = 1 << 3
SOL_TLS = 282  # linux/socket.h
TLS_TX = 1  # linux/tls.h: the transmit crypto state, readable once OpenSSL set it
TCP_ULP = 31  # linux/tcp.h: attach an upper-layer protocol ("tls") to a TCP socket
# linux/tls.h: TLS versions and cipher types as getsockopt(TLS_TX) reports them.
_TLS_VERSIONS = {0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}
_KERNEL_CIPHERS = {51: "AES-GCM-128", 52: "AES-GCM-256", 53: "AES-CCM-128", 54: "CHACHA20-POLY1305"}
# Bytes getsockopt(TLS_TX) may return: the largest tls12_crypto_info_* (AES-GCM-256: 56).
_CRYPTO_INFO_SIZE = 64
# The oldest protocol offered either way: TLS 1.0 and 1.1 are broken and gone from clients.
MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2
# Seconds a TLS handshake may take (the server passes its <header-timeout> instead).
HANDSHAKE_TIMEOUT = 10.0
# SO_SNDBUF of a bridge's socketpair: the kernel doubles it (and counts its overhead), so
# the sender sees EAGAIN once at most 128 KiB of plaintext wait (3 s of a 320 kbit/s
# stream), like a TCP send buffer.
BRIDGE_BUFFER = 64 * 1024
# Bytes a bridge moves per SSL_write: one TLS record's worth of plaintext.
BRIDGE_CHUNK = 16 * 1024
# Seconds a closing TLS connection waits to send its close_notify.
CLOSE_TIMEOUT = 1.0
# Seconds a bridge waits on a client that takes no bytes before dropping it. The sender
# has dropped such a listener long before (lag limit), but the greenlet would stay
# blocked in its write: this bounds how long it holds the sockets, as the kernel bounds
# a closed TCP socket's unsent data.
BRIDGE_STALL = 30.0


def is_tls(sock: object) -> bool:
    """Whether `sock` speaks TLS (its fd carries records, not the plain bytes): gevent's
    SSLSocket is no subclass of the standard library's."""
    return isinstance(sock, (gevent.ssl.SSLSocket, ssl.SSLSocket))


class TlsError(Exception):
    """TLS could not be set up; the message is one line for the operator's log."""


# ---- server side ------------------------------------------------------------------------


def server_context(paths: Paths) -> ssl.SSLContext:
    """The context TLS ports shake hands with; raises TlsError saying which file is wrong."""
    if paths.ssl_certificate is None:
        raise TlsError("no <paths><ssl-certificate> configured")
    context = gevent.ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    context.options |= SSL_OP_ENABLE_KTLS
    certificate, key = paths.ssl_certificate, paths.ssl_private_key or paths.ssl_certificate
    try:
        context.load_cert_chain(certificate, key)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"TLS certificate {certificate} (key {key}) not loaded: "
                       f"{why_not_loaded(certificate, key, exc)}") from None
    if paths.ssl_allowed_ciphers is not None:
        try:
            context.set_ciphers(paths.ssl_allowed_ciphers)
        except ssl.SSLError:
            raise TlsError(f"<ssl-allowed-ciphers> {paths.ssl_allowed_ciphers!r} selects no "
                           "cipher OpenSSL knows") from None
    return context


def why_not_loaded(certificate: str, key: str, error: Exception) -> str:
    """What is wrong with the certificate or key files, in words (OpenSSL says "PEM lib")."""
    if isinstance(error, ssl.SSLError) and error.reason == "KEY_VALUES_MISMATCH":
        return "the private key does not belong to the certificate"
    for name, marker, what in ((certificate, b"-----BEGIN CERTIFICATE-----", "certificate"),
                               (key, b"PRIVATE KEY-----", "private key")):
        try:
            text = Path(name).read_bytes()
        except OSError as exc:
            return f"cannot read {name}: {exc.strerror}"
        if marker not in text:
            return f"{name} holds no PEM {what}"
    return str(error)


class ServerTls:
    """The context new handshakes use. `reload` swaps it; connections keep theirs."""

    def __init__(self, paths: Paths) -> None:
        self.context = server_context(paths)

    def reload(self, paths: Paths) -> None:
        """Use `paths`' certificate for new handshakes; raises TlsError (and keeps the
        current one) if it does not load."""
        self.context = server_context(paths)

    def accept(self, sock: socket.socket, timeout: float = HANDSHAKE_TIMEOUT) -> ssl.SSLSocket:
        """`sock`, an accepted connection, after a server handshake; raises TlsError."""
        tls = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        handshake(tls, timeout, "client")
        return tls


def handshake(tls: ssl.SSLSocket, timeout: float, peer: str) -> None:
    """Run `tls`'s handshake within `timeout` s; raises TlsError naming `peer`."""
    expired = TlsError(f"TLS handshake with {peer} took over {timeout:g}s")
    try:
        with gevent.Timeout(timeout, expired):
            tls.do_handshake()
    except ssl.SSLCertVerificationError as exc:
        raise TlsError(f"TLS certificate of {peer} refused: {exc.verify_message}") from None
    except ssl.SSLError as exc:
        raise TlsError(f"TLS handshake with {peer} failed: {exc.reason or exc}") from None
    except OSError as exc:
        raise TlsError(f"TLS handshake with {peer} failed: {exc.strerror or exc}") from None


# ---- handing a TLS listener to the sender -----------------------------------------------


def ktls_tx(sock: socket.socket | ssl.SSLSocket) -> str | None:
    """What the kernel encrypts this socket's sends with (e.g. "TLS 1.3 AES-GCM-128"), or
    None if plain writes on its fd would go out unencrypted."""
    try:
        info = sock.getsockopt(SOL_TLS, TLS_TX, _CRYPTO_INFO_SIZE)
    except OSError:
        return None  # ENOPROTOOPT: no TLS ULP; EBUSY: ULP without transmit keys
    version, cipher = struct.unpack_from("=HH", info)
    return f"{_TLS_VERSIONS.get(version, hex(version))} {_KERNEL_CIPHERS.get(cipher, cipher)}"


def kernel_tls_missing() -> str | None:
    """None if this kernel can do TLS on a TCP socket, else why not (probed on loopback)."""
    with stdlib_socket.create_server(("127.0.0.1", 0)) as server, \
            stdlib_socket.create_connection(server.getsockname()) as client:
        accepted, _ = server.accept()
        accepted.close()
        try:
            client.setsockopt(stdlib_socket.IPPROTO_TCP, TCP_ULP, b"tls")
        except OSError as exc:
            hint = " (the kernel has no tls module: modprobe tls)" if exc.errno == errno.ENOENT else ""
            return f'setsockopt(TCP_ULP, "tls"): {errno.errorcode.get(exc.errno or 0, exc.errno)}{hint}'
    return None


class Bridge:
    """A TLS listener without kTLS: the sender writes plaintext to `fd`; a greenlet
    encrypts it into the TLS socket. Closing `fd` (the worker dropping the listener)
    ends the greenlet, which says close_notify; the client going away closes the other
    end, so the sender's next write fails as for any gone listener."""

    def __init__(self, tls: ssl.SSLSocket) -> None:
        self.tls = tls
        self.outer, self.inner = socket.socketpair(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
        self.outer.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_SNDBUF, BRIDGE_BUFFER)
        self.outer.setblocking(False)
        tls.settimeout(BRIDGE_STALL)
        self.greenlet = gevent.spawn(self.pump)

    @property
    def fd(self) -> int:
        return self.outer.fileno()

    def pump(self) -> None:
        try:
            while data := self.inner.recv(BRIDGE_CHUNK):
                self.tls.sendall(data)
        except OSError:
            pass  # the client is gone or stalled: closing `inner` tells the sender
        finally:
            self.inner.close()
            close_tls(self.tls)

    def close(self) -> None:
        """Close the sender's end (the pump then finishes and closes the TLS socket)."""
        self.outer.close()


def sender_fd(tls: ssl.SSLSocket) -> tuple[int, Bridge | None]:
    """The fd the compiled sender writes this TLS listener's bytes to: the socket's own if
    the kernel encrypts for it, else a new Bridge's (returned, to close with the listener)."""
    if ktls_tx(tls) is not None:
        return tls.fileno(), None
    bridge = Bridge(tls)
    return bridge.fd, bridge


def close_tls(tls: ssl.SSLSocket) -> None:
    """Say close_notify (so clients see the end of the stream, not a truncation), then
    close; a peer that does not read does not hold us longer than CLOSE_TIMEOUT."""
    try:
        tls.settimeout(CLOSE_TIMEOUT)
        tls.unwrap().close()
    except (OSError, ValueError):
        tls.close()


# ---- upstreams --------------------------------------------------------------------------


def client_context(verify: bool = True, cafile: str | None = None) -> ssl.SSLContext:
    """The context for an https master or relay upstream: its certificate checked against
    the system CAs (or only `cafile`, where a leaf certificate also works as a pin) and
    its host name, unless `verify` is off. Raises TlsError for an unreadable `cafile`."""
    context = gevent.ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = MINIMUM_VERSION
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if cafile is None:
        context.load_default_certs()
        return context
    try:
        context.load_verify_locations(cafile)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"<ssl-upstream-cafile> {cafile} not loaded: "
                       f"{getattr(exc, 'strerror', None) or exc}") from None
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # trust a pinned leaf as is
    return context


def wrap_upstream(sock: socket.socket, host: str, port: int, context: ssl.SSLContext,
                  timeout: float = HANDSHAKE_TIMEOUT) -> ssl.SSLSocket:
    """`sock`, connected to an upstream, after a verified client handshake; raises
    TlsError ("TLS certificate of host:port refused: …") for the caller to log once."""
    tls = context.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
    handshake(tls, timeout, f"{host}:{port}")
    return tls
