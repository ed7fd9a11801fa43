"""The supervisor's mount registry: which mounts exist, who writes each ring.

Theory of operation: a source asks (through its worker) to `claim` a mount. The registry
answers in-use / too-many-sources exactly as Icecast 2.4.4 orders those checks (§4.3), or
creates the mount's ring and records the owner. Only the supervisor mutates the registry,
so a mount name is unique across all workers without any locking. Rings are closed here
when a mount is released; workers hold their own mappings and drain their listeners first.

`claim` raises nothing but ClaimRefused, whatever the name and whatever the kernel says:
the supervisor answers claims from its per-worker reader, and an exception there would
cut that worker off. A name over the mount-name limit is refused before any kernel
object exists; the ring's memfd name is derived so that it always fits the kernel's.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

from fanout import core
from fanout.config import Config
from fanout.model.ingest import OGG
from fanout.mountinfo import MountInfo
from fanout.protocol.mount_name import MAX_MOUNT_BYTES, TOO_LONG, mount_name_bytes

# Owner of a relayed mount whose pull is between workers (its worker died, or is handing
# it on): nobody writes its ring until the supervisor gives it to the next one.
NO_WRITER = -1
# The kernel refuses a memfd name over NAME_MAX - len("memfd:") = 249 bytes (EINVAL).
MEMFD_NAME_MAX = 249
# A ring's memfd is named this plus the mount (seen as /memfd:fanout-ring/live in /proc).
RING_NAME_PREFIX = "fanout-ring"


@dataclass(slots=True)
class ClaimRefused(Exception):
    status: int
    reason: str


@dataclass(slots=True)
class MountRecord:
    name: str
    ring: core.Ring
    owner: int  # the worker index of its writer (a source or a relay pull), or NO_WRITER
    info: MountInfo


def ring_memfd_name(mount: str) -> str:
    """The memfd name of `mount`'s ring: the prefix and as much of the name as fits the
    kernel's limit, without NUL (names are labels for /proc, not keys)."""
    label = (RING_NAME_PREFIX + mount).encode("utf-8", "backslashreplace").replace(b"\0", b"")
    return label[:MEMFD_NAME_MAX].decode("utf-8", "ignore")


def create_ring(config: Config, name: str, info: MountInfo, *,
                doorbells: core.Doorbells | None = None) -> core.Ring:
    """A ring sized for mount `name`; ClaimRefused (503) if the kernel cannot make it.
    With `doorbells`, writes through it ring them (a worker's own ring: a fallback file)."""
    resolved = config.resolve_mount(name)
    fmt = core.FORMAT_OGG if info.format == OGG else core.FORMAT_GENERIC
    try:
        capacity = core.ring_capacity_for(resolved.queue_size, resolved.burst_size)
        ring = core.Ring.create(capacity, fmt, name=ring_memfd_name(name),
                                doorbells=doorbells)
    except (OSError, ValueError) as exc:
        raise ClaimRefused(503, f"cannot create the mount's ring ({exc})") from None
    return ring


class MountRegistry:
    def __init__(self) -> None:
        self.mounts: dict[str, MountRecord] = {}
        # Local mounts of configured <relay>s: only their pulls may claim them, connected
        # or not, as 2.4.4 reserves them for as long as the relay is configured (§3.6).
        self.reserved: frozenset[str] = frozenset()

    def claim(self, config: Config, name: str, owner: int, info: MountInfo, *,
              relay: bool = False) -> MountRecord:
        """Create the mount's ring for `owner` (`relay`: for the relay pull it runs, which
        may claim a reserved mount). Raises ClaimRefused, and nothing else: 400 for a name
        over MAX_MOUNT_BYTES, 403 as Icecast would (in use, too many sources), 503 when the
        ring cannot be made (out of memory or file descriptors)."""
        if mount_name_bytes(name) > MAX_MOUNT_BYTES:
            raise ClaimRefused(400, TOO_LONG)
        if name in self.mounts or (name in self.reserved and not relay):
            raise ClaimRefused(403, "Mountpoint in use")
        if len(self.mounts) >= config.limits.sources:
            raise ClaimRefused(403, "too many sources connected")
        record = MountRecord(name, create_ring(config, name, info), owner,
                             replace(info, stream_start=time.time()))
        self.mounts[name] = record
        return record

    def release(self, name: str, owner: int) -> MountRecord | None:
        """Forget a mount if `owner` holds it; the caller broadcasts mount_down."""
        record = self.mounts.get(name)
        if record is None or record.owner != owner:
            return None
        del self.mounts[name]
        record.ring.close()
        return record

    def owned_by(self, owner: int) -> list[str]:
        return [name for name, rec in self.mounts.items() if rec.owner == owner]

    def forget_worker(self, worker: int) -> None:
        """Worker `worker` died: its listener counts are gone, and no writer must ring its
        doorbell for rings it served (its replacement takes the slot)."""
        for record in self.mounts.values():
            record.ring.set_listener_count(worker, 0)
            record.ring.set_reader(worker, False)

    def close_all(self) -> None:
        for record in self.mounts.values():
            record.ring.close()
        self.mounts.clear()
