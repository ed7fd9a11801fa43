"""The supervisor's mount registry: which mounts exist, who writes each ring.

Theory of operation: a source asks (through its worker) to `claim` a mount. The registry
answers in-use / too-many-sources exactly as Icecast 2.4.4 orders those checks (§4.3), or
creates the mount's ring and records the owner. Only the supervisor mutates the registry,
so a mount name is unique across all workers without any locking. Rings are closed here
when a mount is released; workers hold their own mappings and drain their listeners first.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from fanout import core
from fanout.config import Config

# Owner id used for rings written by the supervisor itself (relay pulls).
SUPERVISOR_OWNER = -1


@dataclass(slots=True)
class ClaimRefused(Exception):
    status: int
    reason: str


@dataclass(slots=True)
class MountRecord:
    name: str
    ring: Any  # core.Ring
    owner: int
    info: dict[str, Any] = field(default_factory=dict)


class MountRegistry:
    def __init__(self) -> None:
        self.mounts: dict[str, MountRecord] = {}
        # Local mounts of configured <relay>s: only the supervisor may claim them, connected
        # or not, as 2.4.4 reserves them for as long as the relay is configured (§3.6).
        self.reserved: frozenset[str] = frozenset()

    def claim(self, config: Config, name: str, owner: int, info: dict[str, Any]) -> MountRecord:
        """Create the mount's ring for `owner`; raises ClaimRefused (403) as Icecast would."""
        if name in self.mounts or (name in self.reserved and owner != SUPERVISOR_OWNER):
            raise ClaimRefused(403, "Mountpoint in use")
        if len(self.mounts) >= config.limits.sources:
            raise ClaimRefused(403, "too many sources connected")
        resolved = config.resolve_mount(name)
        capacity = core.ring_capacity_for(resolved.queue_size, resolved.burst_size)
        fmt = core.FORMAT_OGG if info.get("format") == "ogg" else core.FORMAT_GENERIC
        ring = core.Ring.create(capacity, fmt, name=f"fanout-ring{name}")
        ring.set_flags(core.FLAG_LIVE)
        info = {**info, "stream_start": time.time()}
        record = MountRecord(name, ring, owner, info)
        self.mounts[name] = record
        return record

    def release(self, name: str, owner: int) -> MountRecord | None:
        """Forget a mount if `owner` holds it; the caller broadcasts mount_down."""
        record = self.mounts.get(name)
        if record is None or record.owner != owner:
            return None
        del self.mounts[name]
        record.ring.set_flags(core.FLAG_ENDED)
        record.ring.close()
        return record

    def owned_by(self, owner: int) -> list[str]:
        return [name for name, rec in self.mounts.items() if rec.owner == owner]

    def forget_worker_counts(self, worker: int) -> None:
        for record in self.mounts.values():
            record.ring.set_listener_count(worker, 0)

    def close_all(self) -> None:
        for record in self.mounts.values():
            record.ring.close()
        self.mounts.clear()
