"""write_atomic: the old file survives a write that fails half-way, and the failure names the file.

The real full disk (a filled tmpfs) is in tests/integration/test_disk_full.py and test_resilience.py;
here the kernel's refusal is simulated at the flush to disk, for the messages of each errno."""

from __future__ import annotations

import errno
import os

import pytest

from controller import files
from controller.errors import WriteFailed
from controller.files import write_atomic


def test_unchanged_content_is_not_rewritten(tmp_path):
    target = tmp_path / "a.txt"
    assert write_atomic(target, "x\n", mode=0o600) is True
    assert write_atomic(target, "x\n", mode=0o600) is False
    assert (target.stat().st_mode & 0o777) == 0o600


@pytest.mark.parametrize(
    ("code", "hint"),
    [
        (errno.ENOSPC, "is full: free some space and run the command again"),
        (errno.EROFS, "is on a read-only filesystem"),
        (errno.EIO, "check that"),
    ],
)
def test_a_failed_write_keeps_the_old_file_and_names_it(tmp_path, monkeypatch, code, hint):
    target = tmp_path / "journal.json"
    target.write_text("old\n")

    def refuse(fd: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(files.os, "fsync", refuse)
    with pytest.raises(WriteFailed) as failed:
        write_atomic(target, "new\n")
    assert failed.value.message == f"cannot write {target}: {os.strerror(code)} (journal.json is unchanged)"
    assert hint in failed.value.hint
    assert failed.value.exit_code == 1
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal.json"], "the temp file was left behind"


def test_a_file_that_could_not_be_created_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(files.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space")))
    with pytest.raises(WriteFailed, match=r"\(new.env was not created\)"):
        write_atomic(tmp_path / "new.env", "A=1\n")
    assert list(tmp_path.iterdir()) == []
