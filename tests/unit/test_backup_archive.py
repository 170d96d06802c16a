"""The backup file on its own: written 0600 through FILE.partial, read back only when every member
matches the manifest, and every kind of damage refused by name before anything is changed."""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import tarfile
import time
from pathlib import Path

import pytest

from controller.backup.archive import (
    pack_folder,
    read_manifest,
    sha256_file,
    unpack_folder,
    verify_and_extract,
    write_backup,
)
from controller.backup.manifest import ENV_FILE, FORMAT, FORMAT_VERSION, MANIFEST, WEBUI_DATA, Image, Manifest
from controller.config.backups import backup_name, backups_in, beyond_keep, newest_backup
from controller.doctor.host_checks import check_backup
from controller.doctor.records import OK, WARN, BackupFacts
from controller.errors import InputError
from controller.runtime.webui_data import database_facts
from tests.unit.cli_support import collapse_whitespace, run_cli


def _members(tmp_path: Path) -> dict[str, Path]:
    data = tmp_path / "data"
    (data / "uploads").mkdir(parents=True)
    (data / "uploads" / "report.pdf").write_bytes(b"%PDF-1.4 a file a user uploaded")
    (data / "webui.db").write_bytes(b"SQLite format 3\x00 stand-in")
    pack_folder(data, tmp_path / WEBUI_DATA)
    (tmp_path / ENV_FILE).write_text("WEBUI_ADMIN_PASSWORD=x\n")
    return {WEBUI_DATA: tmp_path / WEBUI_DATA, ENV_FILE: tmp_path / ENV_FILE}


def _manifest(members: dict[str, Path], **changes) -> Manifest:
    fields = dict(format=FORMAT, format_version=FORMAT_VERSION, created="2026-12-03T10:00:00+00:00",
                  controller_version="0.1.0", project="llm", webui=Image(reference="open-webui:0.12.4"),
                  schema_revision="0bd252b206fb", users=2, chats=3,
                  members={name: sha256_file(path) for name, path in members.items()})  # fmt: skip
    return Manifest(**{**fields, **changes})


@pytest.fixture
def backup(tmp_path) -> tuple[Path, Manifest]:
    members = _members(tmp_path / "src")
    manifest = _manifest(members)
    out = tmp_path / "site.backup.tar"
    write_backup(out, manifest, members)
    return out, manifest


def test_a_backup_is_0600_reads_back_and_unpacks_the_data_folder(backup, tmp_path):
    out, manifest = backup
    assert os.stat(out).st_mode & 0o777 == 0o600
    assert not out.with_name(out.name + ".partial").exists()
    assert read_manifest(out) == manifest
    staging = tmp_path / "staging"
    staging.mkdir()
    found = verify_and_extract(out, read_manifest(out), staging)
    assert set(found) == {WEBUI_DATA, ENV_FILE}
    unpack_folder(found[WEBUI_DATA], tmp_path / "restored")
    assert (tmp_path / "restored" / "uploads" / "report.pdf").read_bytes() == b"%PDF-1.4 a file a user uploaded"


def test_a_failed_write_leaves_no_partial_file(tmp_path):
    members = _members(tmp_path / "src")
    manifest = _manifest(members)
    members[ENV_FILE] = tmp_path / "gone"  # vanishes before it is packed
    out = tmp_path / "site.backup.tar"
    with pytest.raises(FileNotFoundError):
        write_backup(out, manifest, members)
    assert list(tmp_path.glob("site.backup.tar*")) == []


def _rewrite(path: Path, change) -> None:
    """Rewrite the tar member by member; change(name, data) returns the new data or None to drop it."""
    with tarfile.open(path) as tar:
        items = [(info, tar.extractfile(info).read()) for info in tar]
    with tarfile.open(path, "w") as tar:
        for info, data in items:
            data = change(info.name, data)
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda name, data: data[:-1] + b"!" if name == ENV_FILE else data, "member env does not match the manifest"),
        (lambda name, data: None if name == WEBUI_DATA else data, "are in the manifest but not in the file"),
        (lambda name, data: data.replace(b'"users": 2', b'"users": -1') if name == MANIFEST else data, "field 'users'"),
        (
            lambda name, data: (
                data.replace(b'"format_version": 1', b'"format_version": 9') if name == MANIFEST else data
            ),
            "backup format version 9; this controller reads version 1",
        ),
        (lambda name, data: b"{not json" if name == MANIFEST else data, "manifest.json is not JSON"),
        (lambda name, data: b"[" * 50_000 if name == MANIFEST else data, "nested more than 8 levels deep"),
    ],
    ids=["changed-byte", "missing-member", "bad-field", "newer-format", "not-json", "deep"],
)
def test_damage_is_refused_by_name(backup, tmp_path, change, complaint):
    out, _ = backup
    _rewrite(out, change)
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(InputError) as caught:
        verify_and_extract(out, read_manifest(out), staging)
    assert complaint in caught.value.message and str(out) in caught.value.message


def test_an_added_member_and_a_truncated_file_are_refused(backup, tmp_path):
    out, manifest = backup
    whole = out.read_bytes()
    with tarfile.open(out, "a") as tar:
        info = tarfile.TarInfo("../../etc/cron.d/x")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(InputError, match="unexpected member"):
        verify_and_extract(out, manifest, tmp_path)
    out.write_bytes(whole[:4000])  # the manifest is whole, the data member is cut
    assert read_manifest(out) == manifest
    with pytest.raises(InputError, match="not a readable backup"):
        verify_and_extract(out, manifest, tmp_path)


@pytest.mark.parametrize("name", ["../outside.txt", "/etc/passwd", "link"])
def test_a_data_folder_member_outside_the_folder_or_a_link_is_refused(tmp_path, name):
    member = tmp_path / WEBUI_DATA
    with tarfile.open(member, "w") as tar:
        info = tarfile.TarInfo(name)
        if name == "link":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(InputError, match="is not a plain file or folder inside the data folder"):
        unpack_folder(member, tmp_path / "restored")
    assert not (tmp_path / "restored").exists() and not (tmp_path.parent / "outside.txt").exists()


def test_database_facts_read_revision_and_counts_from_a_snapshot(tmp_path):
    path = tmp_path / "webui.db"
    with sqlite3.connect(path) as db:
        db.executescript(
            'CREATE TABLE alembic_version (version_num TEXT); INSERT INTO alembic_version VALUES ("abc123");'
            'CREATE TABLE "user" (id TEXT); INSERT INTO "user" VALUES ("a"), ("b");'
            "CREATE TABLE chat (id TEXT); INSERT INTO chat VALUES ('c');"
        )
    assert database_facts(path) == {"schema_revision": "abc123", "users": 2, "chats": 1}


def test_rotation_keeps_the_newest_and_ignores_partial_and_other_files(tmp_path):
    names = [backup_name(time.time() - age) for age in (300, 200, 100)]
    for age, name in zip((300, 200, 100), names, strict=True):
        (tmp_path / name).write_bytes(b"")
        os.utime(tmp_path / name, (time.time() - age, time.time() - age))
    (tmp_path / (names[-1] + ".partial")).write_bytes(b"")
    (tmp_path / "notes.txt").write_text("")
    safety = tmp_path / ("pre-restore-" + backup_name(time.time() - 400))
    safety.write_bytes(b"")
    os.utime(safety, (time.time() - 400, time.time() - 400))
    assert [p.name for p in backups_in(tmp_path)] == [safety.name, *names]
    assert [p.name for p in beyond_keep(tmp_path, 2)] == names[:1]  # never the safety copy
    newest, age = newest_backup(tmp_path)
    assert newest.name == names[-1] and 99 <= age < 200
    assert newest_backup(tmp_path / "none") is None


def test_cli_restore_of_a_missing_or_foreign_file_is_exit_2_and_names_it(tmp_path):
    missing = run_cli(tmp_path, "restore", str(tmp_path / "nope.backup.tar"), "--yes")
    assert missing.returncode == 2 and "nope.backup.tar: no such file" in collapse_whitespace(missing.stderr)
    foreign = tmp_path / "foreign.tar"
    with tarfile.open(foreign, "w") as tar:
        info = tarfile.TarInfo("hello.txt")
        tar.addfile(info, io.BytesIO(b""))
    result = run_cli(tmp_path, "restore", str(foreign), "--yes")
    assert result.returncode == 2 and "the first member is not manifest.json" in collapse_whitespace(result.stderr)
    assert "Traceback" not in missing.stderr + result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.tar"]


def test_cli_backup_refuses_an_existing_file_and_keep_0(tmp_path):
    (tmp_path / "old.backup.tar").write_bytes(b"keep me")
    exists = run_cli(tmp_path, "backup", "-o", str(tmp_path / "old.backup.tar"))
    assert exists.returncode == 2 and "already exists" in collapse_whitespace(exists.stderr)
    assert (tmp_path / "old.backup.tar").read_bytes() == b"keep me"
    keep = run_cli(tmp_path, "backup", "--keep", "0")
    assert keep.returncode == 2 and "--keep" in keep.stderr
    assert json.dumps(sorted(p.name for p in tmp_path.iterdir())) == '["old.backup.tar"]'


@pytest.mark.parametrize(
    ("facts", "status", "words"),
    [
        (BackupFacts("/srv/llm/backups"), WARN, "no backup in /srv/llm/backups"),
        (BackupFacts("/b", "/b/webui-x.backup.tar", 3 * 86400), WARN, "72 h old"),
        (BackupFacts("/b", "/b/webui-x.backup.tar", 3600), OK, "1.0 h old"),
    ],
    ids=["none", "three-days-old", "an-hour-old"],
)
def test_doctor_warns_without_a_backup_of_the_last_day(facts, status, words):
    check = check_backup(facts)
    assert check.status == status and words in check.finding
    assert (check.fix is not None) == (status == WARN)


def test_restore_refuses_a_disk_without_room_for_its_staging_and_writes_nothing(backup, tmp_path, monkeypatch):
    from controller.backup.restore import restore_backup
    from controller.config.site import SiteConfig
    from controller.lifecycle.stack import Stack
    from controller.operator_ui import OperatorUI

    path, _ = backup
    site = SiteConfig(root=tmp_path / "site", env_file=tmp_path / "site" / ".env")
    full = shutil.disk_usage(tmp_path)._replace(free=path.stat().st_size)  # room for one copy, not two
    monkeypatch.setattr("controller.runtime.host.shutil.disk_usage", lambda where: full)
    with pytest.raises(InputError, match=r"free; restoring site\.backup\.tar .* needs about"):
        restore_backup(Stack(site, catalog=lambda: pytest.fail("no catalog needed")), path, catalog=None,
                       ui=OperatorUI())  # fmt: skip
    assert not site.root.exists()
