"""The state file (active profile and history of up/switch/down) and the lock that serialises runs."""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock, Timeout

from controller.errors import LockTimeout
from controller.files import write_atomic

STATE_VERSION = 1
HISTORY_LIMIT = 50


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


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


@dataclass
class State:
    active: str | None = None
    served_model_name: str | None = None
    since: str | None = None
    history: list[Event] = field(default_factory=list)

    def record(self, event: Event) -> None:
        self.history.append(event)
        del self.history[:-HISTORY_LIMIT]


class StateStore:
    def __init__(self, state_dir: Path):
        self.dir = state_dir
        self.path = state_dir / "state.json"
        # The compose file of the last successful up or switch: what a failed switch rolls back to.
        self.active_compose = state_dir / "active-compose.yml"
        self._lock_path = state_dir / "controller.lock"
        self._owner_path = state_dir / "controller.lock.owner"

    def load(self) -> State:
        if not self.path.exists():
            return State()
        data = json.loads(self.path.read_text(encoding="utf-8"))
        history = [Event(**item) for item in data.get("history", [])]
        return State(
            active=data.get("active"),
            served_model_name=data.get("served_model_name"),
            since=data.get("since"),
            history=history,
        )

    def save(self, state: State) -> None:
        data = {"version": STATE_VERSION, **asdict(state)}
        write_atomic(self.path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode=0o600)

    @contextmanager
    def locked(self, command: str, *, timeout: float, on_wait=None):
        """Hold the controller lock; on_wait(owner) is called once if another run holds it."""
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
            self._owner_path.write_text(f"pid {os.getpid()}, `{command}`, since {now_iso()}", encoding="utf-8")
            yield
        finally:
            self._owner_path.unlink(missing_ok=True)
            lock.release()

    def _owner(self) -> str:
        try:
            return self._owner_path.read_text(encoding="utf-8")
        except OSError:
            return "owner unknown"


def elapsed(start: float) -> float:
    return round(time.monotonic() - start, 2)
