"""The kernel send buffer asked for each listener socket (fanout.worker.listeners)."""
from __future__ import annotations

import pytest

from fanout.worker.listeners import MAX_SNDBUF, MIN_SNDBUF, listener_sndbuf
from fanout.worker.pump import BUDGET


def test_the_default_queue_size_gives_a_quarter_of_it():
    assert listener_sndbuf(0, 512000) == 128000


@pytest.mark.parametrize("queue_size", [0, 4096, 100_000])
def test_a_small_queue_size_still_gets_the_floor(queue_size):
    assert listener_sndbuf(0, queue_size) == MIN_SNDBUF == 32 * 1024


@pytest.mark.parametrize("queue_size", [1_000_000, 64 * 1024 * 1024])
def test_a_large_queue_size_is_capped_at_half_a_pass_budget(queue_size):
    # Linux doubles the value: the buffer then holds one BUDGET, what a pass sends at most.
    assert listener_sndbuf(0, queue_size) == MAX_SNDBUF == BUDGET // 2


@pytest.mark.parametrize("queue_size", [0, 512000, 64 * 1024 * 1024])
def test_so_sndbuf_of_the_listen_socket_wins(queue_size):
    assert listener_sndbuf(8192, queue_size) == 8192
