"""Benchmark: backup and restore of an Open WebUI volume with 1,000 chats (time, file size, and a
plain `docker compose cp` of the live folder as the peer), the Open WebUI downtime of
`controller upgrade` 0.11.4 -> 0.12.4, and the time a failed migration takes to roll back; chats
are counted after every step (none may be lost). Each run on a fresh stack; medians printed.

    .venv/bin/python benchmarks/bench_backup_upgrade.py [--runs 3] [--chats 1000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.config.settings import load_settings
from controller.config.site import SiteConfig  # noqa: E402
from controller.runtime import webui_data  # noqa: E402
from controller.runtime.docker import ComposeProject  # noqa: E402
from controller.runtime.webui_client import WebUI  # noqa: E402
from tests.integration import harness  # noqa: E402
from tests.integration.webui_api import admin_session  # noqa: E402

# A chat as the browser stores it: one question and one answer of a few hundred characters.
ANSWER = "A sentence of an answer, as a small model writes it. " * 6


def _chat_body(i: int) -> dict:
    question = {"id": "q", "role": "user", "content": f"Question {i}?", "parentId": None, "childrenIds": ["a"]}
    messages = {"q": question, "a": {"id": "a", "role": "assistant", "content": ANSWER, "parentId": "q",
                                     "childrenIds": []}}  # fmt: skip
    return {"chat": {"title": f"chat {i}", "models": ["tiny-a"], "history": {"messages": messages, "currentId": "a"},
                     "messages": list(messages.values())}}  # fmt: skip


def _seed(url: str, token: str, count: int) -> None:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:

        def one(i: int) -> None:
            http.post("/api/v1/chats/new", json=_chat_body(i)).raise_for_status()

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(one, range(count)))


def _chats(project: ComposeProject) -> int:
    """Chats in Open WebUI's database (read-only, in the container)."""
    return webui_data.live_counts(project)["chats"]


class _Site:
    """What tests.integration.webui_api.admin_session needs of a site."""

    def __init__(self, root: Path):
        self.site = SiteConfig(root=root, env_file=root / ".env")
        env = dict(line.split("=", 1) for line in (root / ".env").read_text().splitlines() if "=" in line)
        self.url = f"http://127.0.0.1:{env['WEBUI_PORT']}"

    def settings(self):
        return load_settings(self.site)


def _run_json(root: Path, *args: str) -> tuple[dict, float]:
    start = time.monotonic()
    done = harness.controller(root, *args, "--json", timeout=3600)
    seconds = time.monotonic() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"controller {' '.join(args)} failed:\n{done.stderr}")
    return (json.loads(done.stdout) if done.returncode == 0 else {"failed": done.stderr[-400:]}), seconds


def one_run(client, images: dict, failing: str, chats: int) -> dict:
    previous = {**images, "webui": images["webui-previous"]}
    with harness.scratch_site(client, previous) as (root, project, _port):
        up = harness.controller(root, "up", "tiny-a")
        if up.returncode != 0:
            raise SystemExit(up.stderr)
        site = _Site(root)
        compose = ComposeProject(project, root / "compose" / "docker-compose.yml", root / ".env")
        with WebUI(site.url) as webui:
            _seed(site.url, admin_session(site, webui).token, chats)
        seeded = _chats(compose)
        upgraded, upgrade_s = _run_json(root, "upgrade", "--webui-image", images["webui"], "--yes")
        after_upgrade = _chats(compose)
        backup = root / "bench.backup.tar"
        written, backup_s = _run_json(root, "backup", "-o", str(backup))
        with tempfile.TemporaryDirectory() as tmp:  # the peer: a plain copy of the live folder
            start = time.monotonic()
            compose.run("cp", "webui:/app/backend/data/.", str(Path(tmp) / "data"), timeout=600)
            copy_s = time.monotonic() - start
        restored, restore_s = _run_json(root, "restore", str(backup), "--yes")
        after_restore = _chats(compose)
        failed, rollback_s = _run_json(root, "upgrade", "--webui-image", failing, "--yes")
        after_rollback = _chats(compose)
    return {
        "chats": seeded,
        "lost": max(0, seeded - min(after_upgrade, after_restore, after_rollback)),
        "upgrade_command_s": upgrade_s,
        "upgrade_down_s": upgraded["webui"]["downtime_s"],
        "backup_s": backup_s,
        "backup_mb": written["bytes"] / 1e6,
        "plain_copy_s": copy_s,
        "restore_s": restore_s,
        "rollback_command_s": rollback_s if "failed" in failed else float("nan"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chats", type=int, default=1000)
    args = parser.parse_args()
    client = docker.from_env()
    images = harness.images_and_tiny_model()
    with tempfile.TemporaryDirectory() as tmp:
        failing = harness.webui_with_migration(client, images["webui"], Path(tmp), "migration-raises",
                                               "c0ffee000001", "raise RuntimeError()")  # fmt: skip
    try:
        rows = [one_run(client, images, failing, args.chats) for _ in range(args.runs)]
    finally:
        client.images.remove(failing, force=True)
    print(f"{'measure':<52}" + "".join(f"{'run ' + str(i + 1):>10}" for i in range(len(rows))) + f"{'median':>10}")
    for key in rows[0]:
        values = [row[key] for row in rows]
        print(f"{key:<52}" + "".join(f"{v:>10.1f}" for v in values) + f"{statistics.median(values):>10.1f}")
    return 0 if all(row["lost"] == 0 for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
