"""Listener clients: who may listen, to which mount, and with which response head.

Theory of operation: a listener's request (GET/HEAD of a mount, §5.1) is let in by
`listener_auth.login`, served by its mount or the first live one of the mount's fallback
chain, refused (or, on a master, redirected to a slave) when the mount is full, and held
while an on-demand relay connects. It is then answered by queueing its response head
(and, for Ogg, the stream's header pages) as the `prefix` of a core `Listener` placed at
the mount's burst point, and handed to the mount's pump (`pump.py`), which owns the
socket from then on.

What a listener that stops reading costs is bounded twice: fanout lets it lag queue-size
bytes behind the source (`lag_limit`), and its socket's kernel send buffer is fixed
(`listener_sndbuf`) instead of autotuned up to tcp_wmem's 4 MB, so it is dropped once
about queue-size plus that buffer went unread: seconds of audio, not minutes.
"""
from __future__ import annotations

import logging
import socket
import time


from fanout import core
from fanout.lifecycle import MountState, RelayState
from fanout.messages import DemandRelay
from fanout.model.intro import interleave_icy
from fanout.protocol.auth import basic_credentials
from fanout.protocol.errors import ProtocolError
from fanout.protocol.http import Request, wants_icy_metadata
from fanout.protocol.icy import DEFAULT_METAINT
from fanout.protocol.redirect import (
    ALWAYS, HTTP, HTTPS, is_redirected, marked_query, redirect_location, redirect_wanted,
)
from fanout.protocol.responses import listener_icy_headers, render_listener_head, render_redirect
from fanout.source_files import load_intro
from fanout.worker import filemount, files, listener_auth
from fanout.worker.client import Connection
from fanout.worker.credentials import is_relay_client
from fanout.worker.pump import (
    BUDGET, UNSEEN_META_GEN, lag_limit, publish_count, start_point, start_pump,
)
from fanout.worker.state import ListenerInfo, LocalMount, Login, Worker

log = logging.getLogger("fanout.listener")

# How an Icecast slave's relay pull starts its User-Agent (its <server-id>, by default
# "Icecast 2.4.4"): no player says that, and a pull must never be redirected.
ICECAST_AGENT = "icecast"
# Seconds a listener of an idle on-demand relay waits for the upstream before a 404.
ON_DEMAND_WAIT = 10.0
# Listeners one worker may hold per mount while its on-demand upstream connects (each is
# a socket and a greenlet waiting for the mount's next change); a flash crowd on a slave's
# on-demand relay is served once the upstream answers, usually within a second.
MAX_PENDING = 1000
# SO_SNDBUF of a listener socket whose <listen-socket> has no <so-sndbuf>: the mount's
# queue-size / SNDBUF_SHARE, within [MIN_SNDBUF, MAX_SNDBUF]. Linux doubles the value, so
# a listener that stops reading holds at most ~queue-size/2 in the kernel besides the
# queue-size it may lag (autotuning would let it hold up to 4 MB). Unacknowledged bytes
# also live in that buffer, so it caps one listener (a slave too) at ~buffer/RTT: with the
# default, 3-7 Mbit/s at 300 ms, far above audio (a far video stream wants a larger
# queue-size or <so-sndbuf>).
SNDBUF_SHARE = 4
# Floor: a pass's worth (MAX_DELAY) of a few Mbit/s, so a small queue-size does not make a
# fast listener need a pass per few KB.
MIN_SNDBUF = 32 * 1024
# Cap: doubled, one BUDGET, the most a pass sends a listener: with the default queue-size
# (512000 -> 128000) a fast listener still takes a whole pass in one sendmsg, so passes
# (one sendmsg per listener each: where the CPU goes) do not multiply; a larger buffer
# would save no pass.
MAX_SNDBUF = BUDGET // 2


def serve_listener(worker: Worker, conn: Connection, request: Request, leftover: bytes) -> None:
    with listener_auth.login(worker, conn, request) as login:  # 401 unless let in (§5.1)
        serve_let_in(worker, conn, request, login)


def serve_let_in(worker: Worker, conn: Connection, request: Request, login: Login) -> None:
    mount = filemount.serving_mount(worker, request.path)  # a live mount or a fallback file
    if mount is None:  # issue 11 (opswire): a webroot file, else 404 (§5.1 step 7)
        return files.serve_file(worker, conn, request)
    listener_auth.refuse_duplicate(worker, login)
    slave = is_relay_client(worker, request)  # slaves bypass max-listeners, as KH (§1.8)
    if directed(worker, mount, request) and redirect_to_slave(worker, conn, request, "director"):
        return
    if not slave and is_full(mount):
        mount = fallback_when_full(worker, mount)
        if mount is None:
            refusal = ProtocolError("max listeners reached", listener_auth.full_status(login))
            return refuse_or_redirect(worker, conn, request, refusal)
    if not mount.info.connected:  # an on-demand relay waiting for listeners
        mount = await_upstream(worker, mount)
        try:
            answer_listener(worker, conn, request, login, mount)
        finally:
            # Counted while held, and not published since: its pull (in any worker) must
            # never see 0 in between, or it hangs up (run-on 0) on the listener it connected for.
            publish_count(worker, mount)
        return
    answer_listener(worker, conn, request, login, mount)


def answer_listener(worker: Worker, conn: Connection, request: Request, login: Login,
                    mount: LocalMount) -> None:
    """Answer a let-in listener from `mount`: its head, then the pump has it."""
    metaint = 0
    if wants_icy_metadata(request) and not mount.is_ogg:
        # A relayed mount serves with its upstream's interval unless configured (§3.5).
        metaint = mount.resolved.metadata_interval or mount.info.icy_metaint or DEFAULT_METAINT
    head = listener_head(worker, mount, request, metaint)
    if request.method == "HEAD":
        conn.send(head)
        return
    add_listener(worker, mount, conn, request, head, metaint)
    listener_auth.admitted(worker, login, mount)


def live_mount(worker: Worker, path: str) -> LocalMount | None:
    """The mount that serves `path`: its own if live, else the first live one of its
    <fallback-mount> chain (§5.1), so listeners can wait on a fallback for a live show.
    A fallback file is not looked for (`filemount.serving_mount` does, and may start it)."""
    for name in (path, *worker.cfg.fallback_chain(path)):
        mount = worker.mounts.get(name)
        # A relay holding its listeners while it reconnects (HELD) takes no newcomers.
        if mount is not None and mount.state is MountState.LIVE:
            return mount
    return None


def is_full(mount: LocalMount) -> bool:
    return bool(0 <= mount.resolved.max_listeners <= mount.ring.listener_count())


def fallback_when_full(worker: Worker, mount: LocalMount) -> LocalMount | None:
    """With <fallback-when-full>, the first live mount with room down `mount`'s fallback
    chain (2.4.4 sends new listeners of a full mount there, §3.9); else None."""
    if not mount.resolved.fallback_when_full:
        return None
    for name in worker.cfg.fallback_chain(mount.name):
        candidate = worker.mounts.get(name)
        if candidate is not None and not candidate.ended and not is_full(candidate):
            return candidate
    return None


def refuse_or_redirect(worker: Worker, conn: Connection, request: Request,
                       refusal: ProtocolError) -> None:
    """A master sends a listener it must refuse to a registered slave instead, as KH does
    (PROTOCOL.md §2.5); with no usable slave, or for a listener already sent here by a
    master (no loop), the refusal stands."""
    if not redirect_wanted(worker.cfg.redirect_mode, refused=True,
                           relay=is_relay_pull(worker, request),
                           redirected=is_redirected(request.query)):
        raise refusal
    if not redirect_to_slave(worker, conn, request, refusal.message):
        raise refusal


def directed(worker: Worker, mount: LocalMount, request: Request) -> bool:
    """Whether `<redirect-mode>always` sends this request on to a slave before anything
    else (issue 12): never a relay pull, never a listener a master already sent here,
    never one of a hidden mount (slaves do not relay those: §1.3)."""
    if worker.cfg.redirect_mode != ALWAYS or mount.resolved.hidden:
        return False
    return redirect_wanted(
        ALWAYS, refused=False, relay=is_relay_pull(worker, request),
        redirected=is_redirected(request.query))


def is_relay_pull(worker: Worker, request: Request) -> bool:
    """A slave's relay pull: with the relay credentials (fanout, KH), or from an Icecast
    slave, whose pulls carry no credentials but its <server-id> as User-Agent (2.4.4)."""
    agent = (request.header("user-agent") or "").lstrip().lower()
    return is_relay_client(worker, request) or agent.startswith(ICECAST_AGENT)


def redirect_to_slave(worker: Worker, conn: Connection, request: Request, why: str) -> bool:
    """Answer `302` to the slave the chooser picks (load-aware, never the requester
    itself, never one that said it lacks the mount); False, with nothing sent, if no slave
    is usable. The Location keeps the path, query and credentials, and carries the marker
    that stops a second redirect. A listener that came over https (TLS, or a trusted
    proxy said so) goes to a slave's TLS port with https, and only to a slave that has
    one: never downgraded to http, it is served or refused here as with no slave."""
    tls = conn.scheme == HTTPS
    target = worker.redirect_chooser.pick(worker.redirect_targets, time.monotonic(), worker.rng,
                                          exclude={conn.ip}, mount=request.path, tls=tls)
    if target is None:
        return False
    given = basic_credentials(request)
    credentials = None if given is None else (given.user, given.password)
    query = marked_query(request.target.partition("?")[2])
    port = target.tls_port if tls else target.port
    location = redirect_location(target.host, port, request.path, query, credentials,
                                 HTTPS if tls else HTTP)
    conn.send(render_redirect(location, server_id=worker.cfg.server_id, now=time.time(),
                              version=request.version))
    log.log(logging.DEBUG if why == "director" else logging.INFO,
            "%s: %s on %s; redirected to slave %s:%d", conn.ip, why, request.path,
            target.host, port)
    return True


def await_upstream(worker: Worker, mount: LocalMount) -> LocalMount:
    """Hold a listener of an idle on-demand relay (no head sent, but counted, which is
    what makes its pull connect: the first one held says so, `DemandRelay`) until the
    upstream is up; the mount then, or a 404 "Mount unavailable" if it fails, stops, or
    takes over ON_DEMAND_WAIT s (§3.7). It waits for the mount's changes, not polling.
    Once up, the count is left as it is: the caller publishes it after adding the
    listener (or not)."""
    if mount.pending >= MAX_PENDING:
        raise ProtocolError(f"Mount unavailable ({MAX_PENDING} listeners already wait for its "
                            "upstream)", 404)
    mount.pending += 1
    publish_count(worker, mount)
    try:
        if mount.pending == 1:
            worker.link.send(DemandRelay(mount.name))
        deadline = time.monotonic() + ON_DEMAND_WAIT
        while not mount.info.connected:
            if mount.ended or relay_state(mount) is RelayState.RETRYING:
                raise ProtocolError("Mount unavailable", 404)
            if not mount.changed.wait(max(0.0, deadline - time.monotonic())):
                raise ProtocolError("Mount unavailable", 404)
    except BaseException:
        mount.pending -= 1
        publish_count(worker, mount)
        raise
    mount.pending -= 1
    current = worker.mounts.get(mount.name)
    if current is not mount:
        publish_count(worker, mount)  # re-claimed meanwhile (another format)
    if current is None or current.ended:
        raise ProtocolError("Mount unavailable", 404)
    return current


def relay_state(mount: LocalMount) -> RelayState | None:
    return None if mount.info.relay is None else mount.info.relay.state


def listener_head(worker: Worker, mount: LocalMount, request: Request, metaint: int) -> bytes:
    config = worker.cfg
    extra = [(h.name, h.value) for h in config.http_headers if h.status in (None, 200)]
    extra += [(h.name, h.value) for h in mount.resolved.http_headers if h.status in (None, 200)]
    user_agent = request.header("user-agent") or ""
    return render_listener_head(
        server_id=config.server_id, now=time.time(), content_type=mount.info.content_type,
        extra_headers=extra,
        icy_headers=listener_icy_headers(mount.info.headers, mount.resolved.stream_name),
        metaint=metaint, user_agent=user_agent,
        flash=request.header("x-flash-version") is not None or "MSIE" in user_agent)


def add_listener(worker: Worker, mount: LocalMount, conn: Connection, request: Request,
                 head: bytes, metaint: int) -> None:
    pos, pages = start_point(mount)
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF,
                         listener_sndbuf(conn.server.spec.so_sndbuf, mount.resolved.queue_size))
    intro, owed, seen = introduction(worker, mount, metaint)
    listener = core.Listener(conn.sender_fd(), pos, lag_limit(mount), metaint,  # TLS: issue 12
                             head + intro + pages)
    if intro and metaint:  # the intro counted as audio: the stream's blocks come that much sooner
        listener.meta_left, listener.meta_gen = owed, seen
    slave = is_relay_client(worker, request)
    listener.tag = ListenerInfo(conn, request.header("user-agent") or "", time.time(), slave)
    conn.keep_open()
    mount.listeners.append(listener)
    mount.fresh.append(listener)  # its head and burst go out on the next tick
    publish_count(worker, mount)
    worker.tallies.observe_listener_count(mount)
    if not slave:
        worker.counters.add(worker.index, "listeners", 1)
    start_pump(worker, mount)


# -- issue 11 (opswire): <intro> -----------------------------------------------------------------
def introduction(worker: Worker, mount: LocalMount, metaint: int) -> tuple[bytes, int, int]:
    """What a new listener of `mount` gets between its head and the stream: the mount's
    intro (with ICY blocks in it when it asked for them every `metaint` bytes, §5.3), the
    audio bytes it then owes before its next block, and the metadata generation it has
    then seen (UNSEEN_META_GEN if none: the stream's first block is the full one)."""
    intro = mount_intro(worker, mount)
    if not intro or not metaint:
        return intro, metaint, UNSEEN_META_GEN
    generation, block = mount.ring.metadata()
    wire, owed = interleave_icy(intro, metaint, block)
    return wire, owed, generation if len(wire) > len(intro) else UNSEEN_META_GEN


def mount_intro(worker: Worker, mount: LocalMount) -> bytes:
    """The mount's <intro> file (b"" if none, or unusable: said once in the log), read
    the first time a listener needs it and again when a reload names another file."""
    name = mount.resolved.intro
    if name is None:
        return b""
    if mount.intro is None or mount.intro[0] != name:
        data = load_intro(mount.name, worker.cfg.paths.webroot, name, mount.info.content_type)
        mount.intro = (name, data)
    return mount.intro[1] or b""
# -- end of issue 11 (opswire) -------------------------------------------------------------------


def listener_sndbuf(so_sndbuf: int, queue_size: int) -> int:
    """SO_SNDBUF for a listener socket: its <listen-socket>'s <so-sndbuf> if set (KH),
    else derived from the mount's queue-size (see SNDBUF_SHARE)."""
    if so_sndbuf > 0:
        return so_sndbuf
    return max(MIN_SNDBUF, min(queue_size // SNDBUF_SHARE, MAX_SNDBUF))
