"""A full disk while the controller writes `.env`: a real filesystem (a 1 MiB tmpfs, mounted as
root) filled to the last byte. The command says which file and why, exits 1, and the old file
is intact to the byte; once space is free, the same command succeeds. (The journal on a full
disk is in test_resilience.py, on a serving stack.)"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from controller.config.envfile import read_env_file
from tests.integration import harness

pytestmark = [pytest.mark.integration]


@pytest.fixture
def small_disk(tmp_path) -> Path:
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True, timeout=30)
    yield mount
    subprocess.run(["umount", str(mount)], check=True, timeout=30)


def fill(directory: Path) -> Path:
    """Write zeros until the filesystem refuses: the real ENOSPC, not a simulated one."""
    filler = directory / ".filler"
    with filler.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
        except OSError as exc:
            assert exc.errno == 28, exc  # ENOSPC
    stats = os.statvfs(directory)
    assert stats.f_bavail == 0
    return filler


def test_a_full_disk_when_secrets_are_generated_leaves_env_intact(tmp_path, small_disk, images, tiny_model):
    project_dir = tmp_path / "site"
    project_dir.mkdir()
    env_file = small_disk / ".env"
    harness.write_site_env(env_file, project=f"{harness.TEST_PROJECT_PREFIX}disk", port=harness.free_port(),
                           images=images, hf_cache=tmp_path / "hf")  # fmt: skip
    original = env_file.read_bytes()
    filler = fill(small_disk)

    # `render` generates the missing secrets and writes them into .env: the disk refuses.
    refused = harness.controller(project_dir, "--env-file", str(env_file), "render", "tiny-a")
    assert refused.returncode == 1, refused.stderr
    message = " ".join(refused.stderr.split())
    assert f"cannot write {env_file}: No space left on device (.env is unchanged)" in message
    assert f"the filesystem holding {small_disk} is full: free some space and run the command again" in message
    assert "Traceback" not in refused.stderr and "internal error" not in refused.stderr
    assert env_file.read_bytes() == original
    assert sorted(p.name for p in small_disk.iterdir()) == [".env", ".filler"], "a temp file was left behind"
    assert not (project_dir / "compose").exists(), "the compose file was written though .env was not"

    filler.unlink()
    done = harness.controller(project_dir, "--env-file", str(env_file), "render", "tiny-a")
    assert done.returncode == 0, done.stderr
    values = read_env_file(env_file)
    assert {"WEBUI_ADMIN_PASSWORD", "WEBUI_SECRET_KEY", "VLLM_API_KEY"} <= set(values)
    assert env_file.read_bytes().startswith(original)  # the operator's lines kept, secrets appended
    assert (env_file.stat().st_mode & 0o777) == 0o600
