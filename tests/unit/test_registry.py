"""The mount registry (fanout.registry) never raises anything but ClaimRefused: whatever the
name (too long, odd bytes) and whatever the kernel says (out of file descriptors)."""
from __future__ import annotations

import os
import resource

import pytest

from fanout.config import Config
from fanout.mountinfo import stream_info
from fanout.protocol.mount_name import MAX_MOUNT_BYTES, TOO_LONG, mount_name_bytes
from fanout.registry import MEMFD_NAME_MAX, ClaimRefused, MountRegistry, ring_memfd_name

INFO = stream_info("audio/mpeg", "", format="generic")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def registry():
    registry = MountRegistry()
    yield registry
    registry.close_all()


@pytest.mark.parametrize("name", [
    "/" + "a" * (MAX_MOUNT_BYTES - 1),  # the longest name: 11 + 254 bytes is over the kernel's 249
    "/" + "é" * ((MAX_MOUNT_BYTES - 1) // 2),  # two bytes a character, cut inside one
    "/%ff\udcff\udcfe.mp3",  # raw bytes that are not UTF-8, as the HTTP layer decodes them
    "/nul\0inside",  # never from a client, but a name is a label, not a key
    "/lone\ud800surrogate",
])
def test_any_name_up_to_the_limit_gets_a_ring(registry, name):
    record = registry.claim(Config(), name, 0, INFO)
    assert record.name == name and record.ring.capacity > 0
    label = ring_memfd_name(name)
    assert len(label.encode()) <= MEMFD_NAME_MAX and "\0" not in label
    assert os.readlink(f"/proc/self/fd/{record.ring.fd}").startswith("/memfd:fanout-ring/")


@pytest.mark.parametrize("name", ["/" + "a" * MAX_MOUNT_BYTES, "/" + "é" * (MAX_MOUNT_BYTES // 2)])
def test_a_name_over_the_limit_is_refused_with_400_before_any_ring_exists(registry, name):
    before = open_fds()
    with pytest.raises(ClaimRefused) as refused:
        registry.claim(Config(), name, 0, INFO)
    assert (refused.value.status, refused.value.reason) == (400, TOO_LONG)
    assert TOO_LONG == f"Mount name too long (limit {MAX_MOUNT_BYTES} bytes)"
    assert open_fds() == before and registry.mounts == {}


def test_the_limit_counts_wire_bytes():
    assert mount_name_bytes("/" + "\udcff" * 9) == 10  # a raw byte each, as they came
    assert mount_name_bytes("/" + "é" * 9) == 19
    assert mount_name_bytes("/\ud800") == 4  # no wire byte gives it: never raises


def test_a_ring_the_kernel_cannot_make_is_refused_with_503(registry):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowest_free = os.dup(0)
    os.close(lowest_free)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))  # no fd left: EMFILE
    try:
        with pytest.raises(ClaimRefused) as refused:
            registry.claim(Config(), "/no-fd-left", 0, INFO)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert refused.value.status == 503
    assert refused.value.reason.startswith("cannot create the mount's ring ([Errno 24]")
    assert registry.mounts == {}
    assert registry.claim(Config(), "/no-fd-left", 0, INFO).name == "/no-fd-left"
