"""The one limit on a mount name's length. It is enforced in one place, the supervisor's
`MountRegistry.claim`, which every source, relay and master-listed mount goes through
before any kernel object exists for it.

Why 254 bytes: an Icecast 2.4.4 slave reads our `/admin/streamlist.txt` with a 256-byte
line buffer (the name, CR LF, and an off-by-one: PROTOCOL.md §1.4), so a longer name could
be served here but never relayed by one; real mounts are a few dozen bytes. The length is
counted in bytes of the name as it came on the wire (percent-decoded), since that is what
every peer stores.
"""
from __future__ import annotations

from fanout.protocol.http import TEXT_ENCODING, TEXT_ERRORS

# Longest mount name accepted from a source, a relay or a master's stream list, in bytes.
MAX_MOUNT_BYTES = 254

TOO_LONG = f"Mount name too long (limit {MAX_MOUNT_BYTES} bytes)"


def mount_name_bytes(name: str) -> int:
    """Length of `name` in wire bytes (text decoded as `fanout.protocol.http` does; a
    surrogate that no wire byte gives counts as its 3 UTF-8 bytes). Never raises."""
    try:
        return len(name.encode(TEXT_ENCODING, TEXT_ERRORS))
    except UnicodeEncodeError:
        return len(name.encode(TEXT_ENCODING, "surrogatepass"))

