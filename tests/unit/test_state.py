from __future__ import annotations

import json
import stat
import threading

import pytest

from controller.errors import LockTimeout
from controller.state import HISTORY_LIMIT, Event, State, StateStore


def _event(i: int = 0, **fields) -> Event:
    base = {"action": "switch", "profile": f"p{i}", "outcome": "ok", "started": f"t{i}", "finished": f"t{i}b"}
    return Event(**{**base, **fields})


def test_load_without_a_state_file_is_empty(tmp_path):
    assert StateStore(tmp_path / ".controller").load() == State()


def test_save_and_load_round_trip_with_mode_0600(tmp_path):
    store = StateStore(tmp_path / ".controller")
    state = State(
        active="llama3-8b-gptq", served_model_name="llama3-8b-instruct-gptq", since="2026-11-25T09:00:00+00:00"
    )
    state.record(_event(1, previous="deepseek-1.5b", phases={"vllm load": 41.5}, downtime_s=43.2))
    state.record(_event(2, outcome="rolled_back", error="KV cache too small"))
    store.save(state)
    assert store.load() == state
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert json.loads(store.path.read_text())["version"] == 1


def test_history_is_capped_at_the_limit_keeping_the_newest(tmp_path):
    state = State()
    for i in range(HISTORY_LIMIT + 7):
        state.record(_event(i))
    assert len(state.history) == HISTORY_LIMIT
    assert state.history[0].profile == "p7" and state.history[-1].profile == f"p{HISTORY_LIMIT + 6}"
    store = StateStore(tmp_path)
    store.save(state)
    assert len(store.load().history) == HISTORY_LIMIT


class Holder:
    """Holds the lock in a thread until told to let go; handshakes through Events, never sleeps."""

    def __init__(self, store: StateStore, command: str):
        self.inside = threading.Event()
        self.release = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, args=(store, command), daemon=True)

    def _run(self, store, command):
        try:
            with store.locked(command, timeout=5):
                self.inside.set()
                self.release.wait(10)
        except BaseException as exc:  # surfaced by the test
            self.errors.append(exc)
            self.inside.set()

    def __enter__(self):
        self.thread.start()
        assert self.inside.wait(10)
        assert not self.errors
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.thread.join(10)
        assert not self.thread.is_alive() and not self.errors


def test_second_run_times_out_naming_the_holders_command(tmp_path):
    store = StateStore(tmp_path / ".controller")
    waits: list[str] = []
    with Holder(store, "up deepseek-1.5b"):
        with pytest.raises(LockTimeout) as info:
            with store.locked("switch llama3-8b-gptq", timeout=0.2, on_wait=waits.append):
                pytest.fail("got the lock while another run held it")
    assert "up deepseek-1.5b" in info.value.message
    assert len(waits) == 1 and "up deepseek-1.5b" in waits[0]


def test_waiting_run_gets_the_lock_when_the_holder_leaves(tmp_path):
    store = StateStore(tmp_path / ".controller")
    holder = Holder(store, "up deepseek-1.5b")
    entered = []
    with holder:
        # on_wait tells the holder to finish; the waiter then gets the lock within its timeout.
        with store.locked("switch llama3-8b-gptq", timeout=10, on_wait=lambda owner: holder.release.set()):
            entered.append(store._owner_path.read_text())
    assert len(entered) == 1 and "switch llama3-8b-gptq" in entered[0]


def test_lock_is_free_again_after_use_and_the_owner_note_is_removed(tmp_path):
    store = StateStore(tmp_path / ".controller")
    waits = []
    with store.locked("down", timeout=0.2, on_wait=waits.append):
        assert "down" in store._owner_path.read_text()
    with store.locked("up deepseek-1.5b", timeout=0.2, on_wait=waits.append):
        pass
    assert waits == [] and not store._owner_path.exists()
