"""The journal: the one versioned record of what runs, what is being changed, and what happened.

It replaces the state file, the copy of the last good compose file and the history: one JSON file
(atomic, 0600) with the active deployment, a pending change (written before a switch touches
anything, so that a controller killed mid-switch leaves evidence the next run resolves), and the
history of runs. An older version is migrated on load; a newer or unknown one is refused.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path

from controller.errors import JournalError, LockTimeout
from controller.files import write_atomic

JOURNAL_VERSION = 2
HISTORY_LIMIT = 50


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def elapsed(start: float) -> float:
    return round(time.monotonic() - start, 2)


def _known(cls: type, data: dict) -> dict:
    """The fields this version knows; a key written by a newer patch release is dropped, not fatal."""
    names = {f.name for f in fields(cls)}
    return {key: value for key, value in data.items() if key in names}


@dataclass
class Event:
    action: str
    profile: str
    outcome: str
    started: str
    finished: str
    previous: str | None = None
    error: str | None = None
    phases: dict[str, float] = field(default_factory=dict)
    downtime_s: float | None = None
    # An upgrade's: the backup taken before it, and what changed ("WEBUI_IMAGE": "old -> new").
    backup: str | None = None
    changes: dict[str, str] | None = None

    @classmethod
    def from_dict(cls, data: dict) -> Event:
        return cls(**_known(cls, data))


@dataclass
class Deployment:
    """What serves now: the profile and the exact rendered deployment a failed change restores."""

    profile: str
    served_model_name: str
    since: str
    text: str
    function_calling: str = "legacy"
    # The compose service (slot) its vLLM runs as; journals before blue-green had only `vllm`.
    service: str = "vllm"
    # Set when a blue-green switch started it with less memory than a plain `up` would give it.
    capacity: str | None = None
    # KV cache tokens: the plan and vLLM's own start-up figure (controller.planner.kv_check).
    kv_tokens: dict | None = None

    @classmethod
    def from_dict(cls, data: dict) -> Deployment:
        return cls(**_known(cls, data))


@dataclass
class Pending:
    """A change in progress. Left behind only when the controller died before it could record an
    outcome; the next `up` or `switch` rolls it back to `restore`."""

    action: str
    target: str
    started: str
    pid: int
    restore: Deployment | None
    # An upgrade's, for the next run to roll it back: the backup of Open WebUI's data taken before
    # it, and the image settings to put back in .env.
    backup: str | None = None
    images: dict[str, str] | None = None

    @classmethod
    def from_dict(cls, data: dict) -> Pending:
        known = _known(cls, data)
        restore = known.get("restore")
        return cls(**{**known, "restore": Deployment.from_dict(restore) if restore else None})


@dataclass
class Journal:
    active: Deployment | None = None
    pending: Pending | None = None
    history: list[Event] = field(default_factory=list)

    def record(self, event: Event) -> None:
        self.history.append(event)
        del self.history[:-HISTORY_LIMIT]

    @property
    def active_profile(self) -> str | None:
        return self.active.profile if self.active else None


class JournalStore:
    def __init__(self, state_dir: Path):
        self.dir = state_dir
        self.path = state_dir / "journal.json"
        self._lock_path = state_dir / "controller.lock"
        self._owner_path = state_dir / "controller.lock.owner"
        # Version 1 kept three files; they are read once to migrate, then removed.
        self._v1_state = state_dir / "state.json"
        self._v1_active_compose = state_dir / "active-compose.yml"

    def load(self) -> Journal:
        if not self.path.exists():
            return self._migrate_v1() if self._v1_state.exists() else Journal()
        data = _read_json(self.path, "the controller journal")
        version = data.get("version") if isinstance(data, dict) else None
        if version != JOURNAL_VERSION:
            newer = isinstance(version, int) and version > JOURNAL_VERSION
            raise JournalError(
                f"{self.path}: journal version {version!r} is not one this controller knows ({JOURNAL_VERSION})",
                hint="a newer controller wrote it: upgrade this one (pipx upgrade), or move the file away"
                if newer
                else "the file is damaged: restore it from a backup, or move it away to start a new history",
            )
        return _from_dict(data)

    def save(self, journal: Journal) -> None:
        data = {"version": JOURNAL_VERSION, **asdict(journal)}
        write_atomic(self.path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode=0o600)

    def update(self, change) -> Journal:
        """Load, apply change(journal), save: one read-modify-write (callers hold the lock)."""
        journal = self.load()
        change(journal)
        self.save(journal)
        return journal

    def _migrate_v1(self) -> Journal:
        data = _read_json(self._v1_state, "the first release's state file, to migrate it")
        journal = Journal(history=[Event.from_dict(item) for item in data.get("history", [])])
        text = self._v1_active_compose.read_text(encoding="utf-8") if self._v1_active_compose.exists() else None
        if data.get("active") and text is not None:
            journal.active = Deployment(
                data["active"], data.get("served_model_name") or "", data.get("since") or "", text
            )
        self.save(journal)
        # Another reader (status runs without the lock) may have migrated it at the same time.
        self._v1_state.unlink(missing_ok=True)
        self._v1_active_compose.unlink(missing_ok=True)
        return journal

    @contextmanager
    def locked(self, command: str, *, timeout: float, on_wait=None):
        """Hold the controller lock; on_wait(owner) is called once if another run holds it."""
        from filelock import FileLock, Timeout

        self.dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self._lock_path))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            owner = self._owner()
            if on_wait:
                on_wait(owner)
            try:
                lock.acquire(timeout=timeout)
            except Timeout:
                raise LockTimeout(
                    f"another controller run holds the lock ({owner}) and did not finish within {timeout:g} s",
                    hint="wait for it to finish, or raise --lock-timeout",
                ) from None
        try:
            write_atomic(self._owner_path, f"pid {os.getpid()}, `{command}`, since {now_iso()}")
            yield
        finally:
            self._owner_path.unlink(missing_ok=True)
            lock.release()

    def _owner(self) -> str:
        try:
            return self._owner_path.read_text(encoding="utf-8")
        except OSError:
            return "owner unknown"


def _from_dict(data: dict) -> Journal:
    active, pending = data.get("active"), data.get("pending")
    return Journal(
        active=Deployment.from_dict(active) if active else None,
        pending=Pending.from_dict(pending) if pending else None,
        history=[Event.from_dict(item) for item in data.get("history", [])],
    )


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise JournalError(
            f"{path}: cannot read {what}: {exc}",
            hint="restore it from a backup, or move it away to start a new history (the stack keeps running)",
        ) from None
    return data if isinstance(data, dict) else {}
