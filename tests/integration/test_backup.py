"""`controller backup` and `controller restore` on the real stack (a stack of the module's own: its
restores sign the admin in often, and Open WebUI limits sign-ins per e-mail to 15 in 3 minutes,
which on the shared stack starved the tests after it): users,
chats and uploaded files come back, what changed after the backup goes, a safety copy is kept, a
newer schema is refused with nothing changed, and a restore that does not prove itself puts the
data from before it back."""

from __future__ import annotations

import io
import json
import os
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from controller.backup.archive import read_manifest
from controller.backup.crypto import decrypt_to
from controller.backup.manifest import ENV_FILE
from controller.config.envfile import write_env_values
from controller.config.site import SiteConfig
from controller.runtime.webui_client import WebUI
from tests.integration import harness
from tests.integration.webui_api import admin_session, chat_title, create_chat

pytestmark = [pytest.mark.integration, pytest.mark.stack]


@pytest.fixture(scope="module")
def backup_site(tmp_path_factory, docker_client, images, tiny_model) -> Iterator[harness.TestSite]:
    with harness.serving_site(docker_client, tmp_path_factory.mktemp("backup"), images, "backup") as site:
        yield site


def _backup(site, out: Path, *options: str) -> dict:
    result = site.controller("backup", "-o", str(out), "--json", *options)
    assert result.returncode == 0, result.stderr
    assert os.stat(out).st_mode & 0o777 == 0o600 and not out.with_name(out.name + ".partial").exists()
    return json.loads(result.stdout)


def _restore(site, path: Path, *options: str):
    return site.controller("restore", str(path), "--yes", "--json", *options)


def _manifest(path: Path, passphrase: str, tmp_path: Path):
    plain = tmp_path / f"{path.name}.plain"
    decrypt_to(path, plain, passphrase)
    return read_manifest(plain)


def _forged(path: Path, out: Path, **manifest_changes) -> Path:
    """A copy of the backup whose manifest says something else (its members untouched)."""
    with tarfile.open(path) as source, tarfile.open(out, "w") as target:
        for info in source:
            data = source.extractfile(info).read()
            if info.name == "manifest.json":
                data = json.dumps({**json.loads(data), **manifest_changes}).encode()
                info.size = len(data)
            target.addfile(info, io.BytesIO(data))
    return out


def _auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_restore_brings_back_users_chats_and_files_and_keeps_a_safety_copy(backup_site, tmp_path):
    site = backup_site
    password = uuid.uuid4().hex
    with WebUI(site.url) as webui:
        token = admin_session(site, webui).token
        ada = {"name": "Ada", "email": "ada@example.com", "password": password, "role": "user"}
        added = httpx.post(f"{site.url}/api/v1/auths/add", headers=_auth(token), timeout=30, json=ada)
        assert added.status_code == 200, added.text
        kept = create_chat(site.url, token, "kept by the backup")
        uploaded = httpx.post(f"{site.url}/api/v1/files/?process=false", headers=_auth(token), timeout=30,
                              files={"file": ("notes.txt", b"minutes of the meeting", "text/plain")})  # fmt: skip
        assert uploaded.status_code == 200, uploaded.text
        file_id = uploaded.json()["id"]

    # Encrypted: the passphrase from a file, as a nightly job would give it.
    passphrase = tmp_path / "passphrase"
    passphrase.write_text(uuid.uuid4().hex + "\n")
    encrypted = ("--passphrase-file", str(passphrase))
    backup = tmp_path / "site.backup.tar.age"
    written = _backup(site, backup, *encrypted)
    assert written["encrypted"] and written["warning"] is None
    secret = passphrase.read_text().strip()
    assert b"kept by the backup" not in backup.read_bytes()
    manifest = _manifest(backup, secret, tmp_path)
    assert (manifest.users, manifest.chats) == (written["users"], written["chats"])
    assert manifest.users >= 2 and manifest.chats >= 1 and manifest.webui.version == "0.12.4"
    assert manifest.vllm is not None and manifest.vllm.version and manifest.vllm.id.startswith("sha256:")
    assert site.settings().webui_admin_password.get_secret_value() not in json.dumps(written)

    with WebUI(site.url) as webui:  # after the backup: one chat more, Ada removed
        token = admin_session(site, webui).token
        later = create_chat(site.url, token, "made after the backup")
        assert httpx.delete(
            f"{site.url}/api/v1/users/{added.json()['id']}", headers=_auth(token), timeout=30
        ).is_success
        assert webui.signin("ada@example.com", password) is None

    assert _restore(site, backup).returncode == 2  # encrypted: not without its passphrase
    restored = _restore(site, backup, *encrypted)
    assert restored.returncode == 0, restored.stderr
    result = json.loads(restored.stdout)
    assert result["proof"] == {"admin_signs_in": True, "users": manifest.users, "chats": manifest.chats,
                               "revision": manifest.schema_revision, "chat_answers": True}  # fmt: skip
    with WebUI(site.url) as webui:
        token = admin_session(site, webui).token
        assert chat_title(site.url, token, kept) == "kept by the backup"
        assert chat_title(site.url, token, later) is None
        assert webui.signin("ada@example.com", password) is not None
        content = httpx.get(f"{site.url}/api/v1/files/{file_id}/content", headers=_auth(token), timeout=30)
        assert content.status_code == 200 and content.content == b"minutes of the meeting"
    safety = _manifest(Path(result["safety_backup"]), secret, tmp_path)
    assert (safety.users, safety.chats) == (manifest.users - 1, manifest.chats + 1)


def _webui_container(client, project: str) -> str:
    labels = [f"{harness.PROJECT_LABEL}={project}", "com.docker.compose.service=webui"]
    (container,) = client.containers.list(filters={"label": labels})
    return container.id


def test_a_newer_schema_is_refused_and_a_restore_that_fails_its_proof_puts_the_data_back(
    backup_site, docker_client, tmp_path
):
    site = backup_site
    backup = tmp_path / "site.backup.tar"
    _backup(site, backup)
    with WebUI(site.url) as webui:
        token = admin_session(site, webui).token
        after = create_chat(site.url, token, "made after the backup")
    webui_id = _webui_container(docker_client, site.project)

    newer = _restore(site, _forged(backup, tmp_path / "newer.backup.tar", schema_revision="ffffffffffff"))
    assert newer.returncode == 2, newer.stderr
    assert "ffffffffffff" in newer.stderr and "is newer than" in newer.stderr and "nothing was changed" in newer.stderr
    assert _webui_container(docker_client, site.project) == webui_id

    wrong = _restore(site, _forged(backup, tmp_path / "wrong.backup.tar", users=99))
    assert wrong.returncode == 1, wrong.stderr
    assert "the backup holds 99" in wrong.stderr and "the data from before it is back" in wrong.stderr
    with WebUI(site.url) as webui:
        token = admin_session(site, webui).token
        assert chat_title(site.url, token, after) == "made after the backup"


def test_a_backup_restores_into_an_empty_project_directory_on_the_same_engine(backup_site, docker_client,
                                                                             tmp_path):  # fmt: skip
    """A new box, as the README says: the backup's .env first (here with its own project name and
    port, since the old stack still runs on this engine), `up`, then `restore`."""
    with WebUI(backup_site.url) as webui:
        moved = create_chat(backup_site.url, admin_session(backup_site, webui).token, "moved to a new box")
    backup = tmp_path / "moving.backup.tar"
    written = _backup(backup_site, backup)

    root = tmp_path / "new-box"
    root.mkdir()
    with tarfile.open(backup) as tar:
        (root / ".env").write_bytes(tar.extractfile(ENV_FILE).read())
    (root / ".env").chmod(0o600)
    project, port = f"{harness.TEST_PROJECT_PREFIX}newbox-{uuid.uuid4().hex[:6]}", harness.free_port()
    write_env_values(root / ".env", {"COMPOSE_PROJECT_NAME": project, "WEBUI_PORT": str(port)}, overwrite=True)
    new_box = harness.TestSite(SiteConfig(root=root, env_file=root / ".env"), project, port)
    try:
        assert new_box.controller("up", "tiny-a").returncode == 0
        with WebUI(new_box.url) as webui:
            assert chat_title(new_box.url, admin_session(new_box, webui).token, moved) is None  # an empty one
        restored = _restore(new_box, backup)
        assert restored.returncode == 0, restored.stderr
        proof = json.loads(restored.stdout)["proof"]
        assert (proof["users"], proof["chats"]) == (written["users"], written["chats"]) and proof["chat_answers"]
        with WebUI(new_box.url) as webui:
            assert chat_title(new_box.url, admin_session(new_box, webui).token, moved) == "moved to a new box"
    finally:
        harness.remove_project(docker_client, project)
