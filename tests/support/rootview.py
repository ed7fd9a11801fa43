"""Run a server that drops to another user, or chroots, on this machine as it is.

Two things stand in the way, and neither may be changed on the machine for a test:

* fanout's workers are exec'd *after* the supervisor dropped to the ``<changeowner>``
  user, so that user must be able to read the Python that runs them. Here Python lives
  under /root (pyenv), which is mode 0700. ``namespace_prefix`` runs the server in a
  private mount namespace (``unshare --mount``) in which the directory that locks the
  user out (/root) is covered by a world-searchable view showing only the Python tree
  inside it (bind mounts: nothing on the disk changes, and the view ends with the
  process).
* with ``<chroot>``, the new root must hold Python, its libraries and fanout at the same
  paths (as the README says). ``ChrootBase`` makes such a root: empty directories on disk
  (so what the server writes inside, e.g. its logs, stays readable by the test), on which
  the namespace bind-mounts the system directories the server needs.

Needs root and util-linux's ``unshare``: ``available()`` says whether this machine has both.
"""
from __future__ import annotations

import os
import shlex
import shutil
import stat
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# System directories a chrooted fanout needs (with the top directories of Python and of
# this checkout, added below): libraries and /etc/passwd, /dev/null for hooks, /proc for
# psutil.
CHROOT_SYSTEM_DIRS = ("usr", "etc", "dev", "proc")


def available() -> bool:
    return os.geteuid() == 0 and shutil.which("unshare") is not None


def open_directory(prefix: str) -> Path:
    """A fresh directory every user may enter (pytest's tmp_path lies under a 0700
    directory of root's); the caller removes it."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


def owned_by(path: Path, uid: int, gid: int) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, uid, gid)
    return path


def locked_ancestor(path: Path) -> tuple[Path, str] | None:
    """(the highest directory above `path` others may not enter, the name of its child
    on the way to `path`), or None if every directory on the way is world-searchable."""
    parts = path.resolve().parts
    for depth in range(1, len(parts)):
        directory = Path(*parts[:depth])
        if not directory.stat().st_mode & stat.S_IXOTH:
            return directory, parts[depth]
    return None


class ChrootBase:
    """A directory to chroot into that holds this machine's system, Python and fanout at
    the same paths (bind-mounted by ``namespace_prefix``) and real, empty directories
    for the rest."""

    def __init__(self, path: Path) -> None:
        self.path = path
        tops = {*CHROOT_SYSTEM_DIRS, Path(sys.prefix).resolve().parts[1], REPO.parts[1]}
        self.mounted: list[str] = []
        for entry in sorted(Path("/").iterdir()):
            if entry.is_symlink():  # merged /usr: /bin -> usr/bin, …
                (path / entry.name).symlink_to(os.readlink(entry))
            elif entry.name in tops:
                (path / entry.name).mkdir()
                self.mounted.append(entry.name)


def namespace_prefix(view: Path, chroot: ChrootBase | None = None) -> list[str]:
    """The command prefix that runs a command in a private mount namespace where Python
    is readable by every user (through `view`, an empty open directory) and, with
    `chroot`, its system directories are mounted in the base."""
    steps = ["set -e"]
    locked = locked_ancestor(Path(sys.prefix))
    if locked is not None:
        directory, child = locked
        (view / child).mkdir()
        steps += [f"mount --bind {shlex.quote(str(directory / child))} {shlex.quote(str(view / child))}",
                  f"mount --rbind {shlex.quote(str(view))} {shlex.quote(str(directory))}"]
    if chroot is not None:
        steps += [f"mount --rbind /{name} {shlex.quote(str(chroot.path / name))}"
                  for name in chroot.mounted]
    steps.append('exec "$@"')
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(steps),
            "namespace"]
