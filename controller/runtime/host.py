"""Facts about this host that a start depends on and Docker does not report: whether a program
outside Docker holds a port, and whether the HF cache's disk has room for the weights.

`controller up` (the Compose target's preflight) and `controller doctor` both judge disk space
with DISK_MARGIN, so they never disagree on whether the weights fit.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
from pathlib import Path

from controller.errors import InputError
from controller.operator_ui import human_size
from controller.planner.engine import GIB

# Free disk wanted beyond the weights' own size (the download's temporary files, rounding).
DISK_MARGIN = 1.1
# Free space kept beyond what a file command (bundle, backup, restore) writes: a full disk breaks
# Docker and the journal alike.
FILE_MARGIN = 1.05


def host_port_in_use(address: str, port: int) -> bool:
    """Whether a program on this host already listens on address:port (a bind attempt)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # Without SO_REUSEADDR, connections in TIME_WAIT after a `down` look like a squatter.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def free_disk_bytes(path: Path) -> tuple[Path, int]:
    """Free bytes on the file system that holds `path`, or its nearest existing parent (the
    HF cache is created by the first `up`)."""
    existing = next((p for p in [path, *path.parents] if p.exists()), Path("/"))
    return existing, shutil.disk_usage(existing).free


def same_file_system(a: Path, b: Path) -> bool:
    """Whether two paths (or their nearest existing parents) are on one file system."""
    return os.stat(free_disk_bytes(a)[0]).st_dev == os.stat(free_disk_bytes(b)[0]).st_dev


def weights_fit(free: int, need: int) -> bool:
    """Whether `free` bytes hold weights of `need` bytes with the margin a download needs."""
    return free >= need * DISK_MARGIN


def disk_warning(cache: Path, need: int) -> str | None:
    """A warning when the disk of `cache` may be too small for `need` bytes of weights; they may be
    cached already, which only a download finds out, so this does not stop a start."""
    existing, free = free_disk_bytes(cache)
    if weights_fit(free, need):
        return None
    return f"{existing} has {free / GIB:.1f} GiB free; the weights need about {need / GIB:.1f} GiB (unless cached)"


def require_room(where: Path, need: int, *, doing: str, hint: str, free: int | None = None) -> None:
    """Refuse (InputError, before anything is written) when the file system of `where` cannot hold
    `need` bytes and FILE_MARGIN; `free` when the caller measured it already."""
    if free is None:
        where, free = free_disk_bytes(where)
    if free < need * FILE_MARGIN:
        raise InputError(f"{where} has {human_size(free)} free; {doing} needs about {human_size(need)}", hint=hint)
