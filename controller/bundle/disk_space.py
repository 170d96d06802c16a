"""The free disk `bundle create` and `bundle load` insist on before they write anything."""

from __future__ import annotations

from pathlib import Path

from controller.errors import InputError
from controller.operator_ui import human_size

# Free space kept beyond what a bundle needs: a full disk breaks Docker and the journal alike.
# Not controller.runtime.host.DISK_MARGIN: that one also covers a download's temporary files.
DISK_MARGIN = 1.05


def require_room(where: Path, free: int, need: int, *, doing: str, hint: str) -> None:
    """Refuse (InputError) when `free` bytes at `where` cannot hold `need` bytes and the margin."""
    if free < need * DISK_MARGIN:
        raise InputError(f"{where} has {human_size(free)} free; {doing} needs about {human_size(need)}", hint=hint)
