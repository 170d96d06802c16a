from __future__ import annotations

import json
import stat
import threading

import pytest

from controller.errors import JournalError, LockTimeout
from controller.journal import HISTORY_LIMIT, JOURNAL_VERSION, Deployment, Event, Journal, JournalStore, Pending


def _event(i: int = 0, **fields) -> Event:
    base = {"action": "switch", "profile": f"p{i}", "outcome": "ok", "started": f"t{i}", "finished": f"t{i}b"}
    return Event(**{**base, **fields})


DEPLOYED = Deployment("llama3-8b-gptq", "llama3-8b-instruct-gptq", "2026-11-25T09:00:00+00:00", "name: x\n")


def test_load_without_a_journal_is_empty(tmp_path):
    assert JournalStore(tmp_path / ".controller").load() == Journal()


def test_save_and_load_round_trip_with_mode_0600(tmp_path):
    store = JournalStore(tmp_path / ".controller")
    journal = Journal(active=DEPLOYED, pending=Pending("switch", "deepseek-1.5b", "t", 42, DEPLOYED))
    journal.record(_event(1, previous="deepseek-1.5b", phases={"weights load": 41.5}, downtime_s=43.2))
    journal.record(_event(2, outcome="rolled_back", error="KV cache too small"))
    store.save(journal)
    assert store.load() == journal
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert json.loads(store.path.read_text())["version"] == JOURNAL_VERSION


def test_history_is_capped_at_the_limit_keeping_the_newest(tmp_path):
    journal = Journal()
    for i in range(HISTORY_LIMIT + 7):
        journal.record(_event(i))
    assert len(journal.history) == HISTORY_LIMIT
    assert journal.history[0].profile == "p7" and journal.history[-1].profile == f"p{HISTORY_LIMIT + 6}"
    store = JournalStore(tmp_path)
    store.save(journal)
    assert len(store.load().history) == HISTORY_LIMIT


def test_unknown_keys_from_a_newer_patch_release_are_ignored(tmp_path):
    store = JournalStore(tmp_path)
    store.save(Journal(active=DEPLOYED, history=[_event(1)]))
    data = json.loads(store.path.read_text())
    data["history"][0]["gpu_seconds"] = 3
    data["active"]["replicas"] = 2
    store.path.write_text(json.dumps(data))
    loaded = store.load()
    assert loaded.history == [_event(1)] and loaded.active == DEPLOYED


@pytest.mark.parametrize("version", [JOURNAL_VERSION + 1, "two", None])
def test_a_newer_or_unknown_version_is_a_clear_error(tmp_path, version):
    store = JournalStore(tmp_path)
    store.path.write_text(json.dumps({"version": version, "history": []}))
    with pytest.raises(JournalError) as caught:
        store.load()
    assert str(store.path) in caught.value.message and caught.value.exit_code == 2


def test_an_unreadable_journal_is_a_clear_error(tmp_path):
    store = JournalStore(tmp_path)
    store.path.write_bytes(b"{not json")
    with pytest.raises(JournalError, match="cannot read"):
        store.load()


def test_version_1_state_files_are_migrated_into_one_journal(tmp_path):
    (tmp_path / "state.json").write_text(json.dumps({
        "version": 1, "active": "tiny-a", "served_model_name": "tiny-a", "since": "t0",
        "history": [{"action": "up", "profile": "tiny-a", "outcome": "ok", "started": "t0", "finished": "t1"}],
    }))  # fmt: skip
    (tmp_path / "active-compose.yml").write_text("name: old\n")
    loaded = JournalStore(tmp_path).load()
    assert loaded.active == Deployment("tiny-a", "tiny-a", "t0", "name: old\n")
    assert [(e.action, e.outcome) for e in loaded.history] == [("up", "ok")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal.json"]


class Holder:
    """Holds the lock in a thread until told to let go; handshakes through Events, never sleeps."""

    def __init__(self, store: JournalStore, command: str):
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
    store = JournalStore(tmp_path / ".controller")
    waits: list[str] = []
    with Holder(store, "up deepseek-1.5b"):
        with pytest.raises(LockTimeout) as info:
            with store.locked("switch llama3-8b-gptq", timeout=0.2, on_wait=waits.append):
                pytest.fail("got the lock while another run held it")
    assert "up deepseek-1.5b" in info.value.message
    assert len(waits) == 1 and "up deepseek-1.5b" in waits[0]


def test_waiting_run_gets_the_lock_when_the_holder_leaves(tmp_path):
    store = JournalStore(tmp_path / ".controller")
    holder = Holder(store, "up deepseek-1.5b")
    entered = []
    with holder:
        # on_wait tells the holder to finish; the waiter then gets the lock within its timeout.
        with store.locked("switch llama3-8b-gptq", timeout=10, on_wait=lambda owner: holder.release.set()):
            entered.append(store._owner_path.read_text())
    assert len(entered) == 1 and "switch llama3-8b-gptq" in entered[0]


def test_lock_is_free_again_after_use_and_the_owner_note_is_removed(tmp_path):
    store = JournalStore(tmp_path / ".controller")
    waits = []
    with store.locked("down", timeout=0.2, on_wait=waits.append):
        assert "down" in store._owner_path.read_text()
    with store.locked("up deepseek-1.5b", timeout=0.2, on_wait=waits.append):
        pass
    assert waits == [] and not store._owner_path.exists()


def test_an_upgrade_keeps_its_backup_and_changes_in_the_journal_and_history_shows_them(tmp_path, capsys):
    from controller.cli.console import print_history

    store = JournalStore(tmp_path / ".controller")
    backup = "/srv/llm/backups/pre-upgrade-20261203T180000Z.backup.tar"
    pending = Pending("upgrade", "tiny-a", "t", 42, DEPLOYED, backup=backup, images={"WEBUI_IMAGE": "owui:0.11.4"})
    journal = Journal(active=DEPLOYED, pending=pending)
    journal.record(_event(1, action="upgrade", backup=backup, changes={"WEBUI_IMAGE": "owui:0.11.4 -> owui:0.12.4"}))
    store.save(journal)
    assert store.load() == journal
    print_history([vars(event) for event in store.load().history])
    shown = " ".join(capsys.readouterr().out.split())
    assert "WEBUI_IMAGE owui:0.11.4 -> owui:0.12.4" in shown and "pre-upgrade-20261203T180000Z" in shown
