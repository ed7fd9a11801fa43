"""Fixtures for the data-plane core: every test runs against both implementations."""
from __future__ import annotations

import importlib
import socket
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest

# The compiled core is the production path: if it is not built, its half of the suite
# fails (it is never skipped).
IMPLEMENTATIONS = {"compiled": "fanout._core", "python": "fanout.coreref"}

# A small ring, so wrap-around comes quickly, and not a power of two, so every test goes
# through the modulo that places sequence s at data[s % capacity].
SMALL_CAPACITY = 4 * 65536 + 3 * 4096


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def core(request: pytest.FixtureRequest) -> ModuleType:
    """fanout._core or fanout.coreref."""
    return importlib.import_module(IMPLEMENTATIONS[request.param])


@pytest.fixture
def make_ring(core: ModuleType) -> Iterator[Callable[..., object]]:
    """make_ring(capacity=SMALL_CAPACITY, fmt=0) -> Ring, closed after the test."""
    rings: list = []

    def make(capacity: int = SMALL_CAPACITY, fmt: int = 0):
        ring = core.Ring.create(capacity, fmt)
        rings.append(ring)
        return ring

    yield make
    for ring in rings:
        ring.close()


@pytest.fixture
def ring(make_ring: Callable[..., object]) -> object:
    return make_ring()


@pytest.fixture
def socket_pair() -> Iterator[Callable[..., tuple[socket.socket, socket.socket]]]:
    """socket_pair(sndbuf=None) -> (tx, rx): tx non-blocking (the listener side)."""
    socks: list[socket.socket] = []

    def make(sndbuf: int | None = None) -> tuple[socket.socket, socket.socket]:
        tx, rx = socket.socketpair()
        socks.extend((tx, rx))
        if sndbuf is not None:
            tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        tx.setblocking(False)
        return tx, rx

    yield make
    for sock in socks:
        sock.close()
