"""Several fanout servers as separate hosts on one LAN, made of Linux network namespaces.

Theory of operation: `Lan(hosts=n)` builds, in the root namespace, one bridge with the
address `10.77.<k>.254/24` (the first `k` whose /24 no root-namespace interface has), and
for host `i` a namespace with `lo` up and an `eth0` at `10.77.<k>.<i+1>/24`, the other end
of whose veth pair is a port of the bridge:

    test process (root ns) ── bridge fob<p>-<seq> 10.77.k.254
                                 ├── veth fob<p>-<seq>h0 ═ eth0 10.77.k.1 (netns host 0)
                                 └── veth fob<p>-<seq>h1 ═ eth0 10.77.k.2 (netns host 1)

So the test process reaches every host through the bridge's connected route, and the
hosts reach each other across the bridge, each from its own address. A command runs on a
host under `host.prefix()` (`ip netns exec <name>`, which execs it: a Popen's pid is the
command's own); `start_fanout_in` starts a server that way, bound to the host's address.

Names carry the owner's pid: namespaces `fanout-test-<pid>-<seq>-h<i>`, links
`fob<p>-<seq>[h<i>]` with p = pid % 10000 (interface names are at most 15 characters),
each link with the alias `fanout-test pid=<pid>`. Before building, leftovers of a run that was
killed (owner pid gone, or our own pid but not made by this process) are removed, with any
process still inside such a namespace. Sweeping and building hold an flock on
`/run/fanout-test-netns.lock`, so two runs at once neither pick the same subnet nor sweep
each other's half-built links.

Teardown (on exit, also after an exception, and after a failed build) deletes the host
ends' veths, the namespaces and the bridge. Stopping servers is the tests' job, before the
Lan goes; a process still inside a host at teardown is killed (with a warning) because it
would keep the namespace alive.

Host-to-host traffic is bridged; with `br_netfilter` loaded it passes the root
namespace's iptables FORWARD chain, so a host firewall that drops forwarded packets
(Docker's default policy) would cut the hosts off from each other (not from the test).
"""
from __future__ import annotations

import fcntl
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil
import pytest

from tests.support.server import FanoutProcess, icecast_xml, start_fanout
from tests.support.waiting import wait_for

NETWORK = "10.77"
GATEWAY_HOST = 254
NETNS_PREFIX = "fanout-test-"
LINK_PREFIX = "fob"
OWNER = "fanout-test pid="
LOCK_PATH = Path("/run/fanout-test-netns.lock")
IFNAMSIZ = 15

NETNS_NAME = re.compile(r"^fanout-test-(?:probe-)?(\d+)(?:-\d+-h\d+)?$")
LINK_NAME = re.compile(r"^fob\d{1,4}-(?:\d+(?:h\d+)?|probe)$")

_sequence = itertools.count()
_ours: set[str] = set()  # names made by live Lans (and the probe) of this process


class LeftoverProcessWarning(UserWarning):
    """A process was still running inside a host when its Lan was torn down."""


# -- running ip --------------------------------------------------------------------------


def ip(*args: str, check: bool = True) -> str:
    """Run `ip args…`; its stdout. RuntimeError with ip's message if it fails and `check`."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def netns_names() -> set[str]:
    """The named network namespaces (`ip netns list`)."""
    return {line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()}


def links() -> dict[str, str]:
    """The root namespace's interfaces, name → alias ("" without one)."""
    return {link["ifname"]: link.get("ifalias", "")
            for link in json.loads(ip("-j", "link", "show") or "[]")}


def netns_pids(name: str) -> list[int]:
    """The processes inside namespace `name`."""
    return [int(pid) for pid in ip("netns", "pids", name, check=False).split()]


def _link_name(suffix: str) -> str:
    name = f"{LINK_PREFIX}{os.getpid() % 10000}-{suffix}"
    assert len(name) <= IFNAMSIZ, f"interface name {name!r} is too long"
    return name


@contextmanager
def _locked() -> Iterator[None]:
    with open(LOCK_PATH, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# -- the probe behind needs_netns ----------------------------------------------------------


@cache
def netns_unusable() -> str:
    """Why this process cannot build a Lan ("" if it can): a namespace and a veth pair
    into it are made and removed once."""
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which("ip") is None:
        return "needs ip (iproute2)"
    name, veth = f"{NETNS_PREFIX}probe-{os.getpid()}", _link_name("probe")
    try:
        with _locked():
            _ours.update((name, veth))
            try:
                ip("netns", "add", name)
                ip("link", "add", "name", veth, "type", "veth", "peer", "name", "eth0",
                   "netns", name)
            finally:
                ip("link", "del", veth, check=False)
                ip("netns", "del", name, check=False)
                _ours.difference_update((name, veth))
    except (OSError, RuntimeError) as exc:
        return f"ip netns unusable: {exc}"
    return ""


needs_netns = pytest.mark.skipif(bool(netns_unusable()),
                                 reason=f"network namespaces: {netns_unusable()}")


# -- stale leftovers ----------------------------------------------------------------------


def _owner_gone(pid: int, name: str) -> bool:
    if pid == os.getpid():
        return name not in _ours  # an earlier process with our pid left it
    return not psutil.pid_exists(pid)


def _link_owner(alias: str) -> int | None:
    """The pid in an alias `fanout-test pid=<pid>`, else None."""
    pid = alias[len(OWNER):]
    return int(pid) if alias.startswith(OWNER) and pid.isdigit() else None


def sweep_stale() -> list[str]:
    """Remove the namespaces and links of killed runs (call with the lock held); their names."""
    removed = []
    for name in sorted(netns_names()):
        match = NETNS_NAME.match(name)
        if match and _owner_gone(int(match.group(1)), name):
            _kill_inside(name, warn=False)
            ip("netns", "del", name, check=False)
            removed.append(name)
    for name, alias in sorted(links().items()):
        owner = _link_owner(alias)
        # Links get their alias under the lock right after creation: none means a killed build.
        if LINK_NAME.match(name) and (owner is None or _owner_gone(owner, name)):
            ip("link", "del", name, check=False)
            removed.append(name)
    return removed


def _kill_inside(name: str, warn: bool = True, timeout: float = 5.0) -> None:
    """SIGKILL every process inside namespace `name` and wait until none is left."""
    pids = netns_pids(name)
    if not pids:
        return
    if warn:
        warnings.warn(f"processes {pids} still ran in {name} at teardown; killed them",
                      LeftoverProcessWarning, stacklevel=4)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_for(lambda: not [pid for pid in netns_pids(name) if _running(pid)], timeout,
             f"the processes in {name} to die")


def _running(pid: int) -> bool:
    """Whether `pid` is a process that has not exited (a zombie has)."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


# -- the LAN ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Host:
    """One host of a Lan: a network namespace with `eth0` at `address`."""

    name: str
    address: str
    index: int
    veth: str  # the root namespace's end of its veth pair, a bridge port

    def prefix(self) -> list[str]:
        """The command prefix that runs a command on this host."""
        return ["ip", "netns", "exec", self.name]


class Lan:
    """A bridge in the root namespace with `hosts` namespaces on it; a context manager."""

    def __init__(self, hosts: int = 2) -> None:
        assert 1 <= hosts < GATEWAY_HOST, hosts
        self.wanted = hosts
        self.seq = next(_sequence)
        self.bridge = ""
        self.subnet = ""  # "10.77.<k>"
        self.hosts: list[Host] = []
        self._made: list[tuple[str, str]] = []  # ("netns" | "veth" | "bridge", name)

    @property
    def gateway(self) -> str:
        """The bridge's address: where the test process's connections to hosts come from."""
        return f"{self.subnet}.{GATEWAY_HOST}"

    def __getitem__(self, index: int) -> Host:
        return self.hosts[index]

    def __enter__(self) -> Lan:
        try:
            with _locked():
                sweep_stale()
                self._build()
            self._wait_up()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.teardown()

    def _build(self) -> None:
        taken = set(links())
        # A live run whose pid is ours modulo 10000 may hold the names: take the next seq.
        while any(n == _link_name(f"{self.seq}") or n.startswith(_link_name(f"{self.seq}h"))
                  for n in taken):
            self.seq = next(_sequence)
        self.subnet = f"{NETWORK}.{_free_subnet()}"
        self.bridge = _link_name(str(self.seq))
        self._add_link("bridge", self.bridge, "type", "bridge", "forward_delay", "0")
        ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        ip("link", "set", "dev", self.bridge, "up")
        for index in range(self.wanted):
            self.hosts.append(self._add_host(index))

    def _add_host(self, index: int) -> Host:
        host = Host(f"{NETNS_PREFIX}{os.getpid()}-{self.seq}-h{index}",
                    f"{self.subnet}.{index + 1}", index, _link_name(f"{self.seq}h{index}"))
        self._remember("netns", host.name)
        ip("netns", "add", host.name)
        self._add_link("veth", host.veth, "type", "veth", "peer", "name", "eth0", "netns",
                       host.name)
        ip("link", "set", "dev", host.veth, "master", self.bridge)
        ip("link", "set", "dev", host.veth, "up")
        ip("-n", host.name, "addr", "add", f"{host.address}/24", "dev", "eth0")
        ip("-n", host.name, "link", "set", "dev", "eth0", "up")
        ip("-n", host.name, "link", "set", "dev", "lo", "up")
        return host

    def _add_link(self, kind: str, name: str, *spec: str) -> None:
        self._remember(kind, name)
        ip("link", "add", "name", name, *spec)
        ip("link", "set", "dev", name, "alias", f"{OWNER}{os.getpid()}")

    def _remember(self, kind: str, name: str) -> None:
        _ours.add(name)
        self._made.append((kind, name))

    def _wait_up(self) -> None:
        def up(*namespace: str) -> bool:
            shown = json.loads(ip(*namespace, "-j", "link", "show", "dev",
                                  "eth0" if namespace else self.bridge))
            return bool(shown) and shown[0].get("operstate") == "UP"

        wait_for(lambda: up() and all(up("-n", host.name) for host in self.hosts), 10,
                 "the LAN's links to come up")

    def teardown(self) -> None:
        """Remove everything this Lan made; tolerant of parts already gone. Idempotent."""
        made, self._made = self._made, []
        failures = []
        for kind, name in made:
            if kind == "netns":
                try:
                    _kill_inside(name)
                except AssertionError as exc:
                    failures.append(str(exc))
        # Host veths first (that also removes their eth0), then namespaces, then the bridge.
        for order in ("veth", "netns", "bridge"):
            for name in (name for kind, name in made if kind == order):
                try:
                    ip(*(("netns", "del", name) if order == "netns" else ("link", "del", name)))
                except RuntimeError as exc:
                    if "No such" not in str(exc) and "Cannot find" not in str(exc):
                        failures.append(str(exc))
                _ours.discard(name)
        if failures:
            warnings.warn(f"Lan {self.bridge} teardown: {'; '.join(failures)}", stacklevel=2)


def _free_subnet() -> int:
    """The first k with no root-namespace address in 10.77.k.0/24 (call with the lock held)."""
    used = set()
    for link in json.loads(ip("-j", "-4", "addr", "show") or "[]"):
        for info in link.get("addr_info", []):
            parts = info.get("local", "").split(".")
            if len(parts) == 4 and ".".join(parts[:2]) == NETWORK:
                used.add(int(parts[2]))
    free = next((k for k in range(256) if k not in used), None)
    if free is None:
        raise RuntimeError(f"every {NETWORK}.k.0/24 subnet is in use")
    return free


# -- fanout on a host ---------------------------------------------------------------------


def host_xml(host: Host, **kwargs: Any) -> str:
    """`icecast_xml(**kwargs)` for a server on `host`: bound to, and named by, its address."""
    return icecast_xml(address=host.address, **kwargs)


def start_fanout_in(host: Host, config_text: str, tmp_path: Path, workers: int = 1,
                    args: tuple[str, ...] = ()) -> FanoutProcess:
    """`start_fanout` on `host`, with its config in `tmp_path/<host name>/` (so several
    hosts may share a `tmp_path`)."""
    directory = tmp_path / host.name
    directory.mkdir(parents=True, exist_ok=True)
    return start_fanout(config_text, directory, workers, args, prefix=host.prefix())
