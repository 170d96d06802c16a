"""The script that reads an Open WebUI image's migrations (run in its container by
controller.runtime.webui_data), run here against a stand-in package: revisions in both spellings
alembic writes, and the head of a history with a merge migration."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from controller.runtime.webui_data import _IMAGE_FACTS

MIGRATIONS = {
    "a1_init.py": "revision = 'a1'\ndown_revision = None\n",
    "b2_branch.py": "revision: str = 'b2'\ndown_revision: Union[str, None] = 'a1'\n",
    "c3_branch.py": "revision = \"c3\"\ndown_revision = 'a1'\n",
    "d4_merge.py": "revision = 'd4'\ndown_revision = ('b2', 'c3')\n",
}


def test_revisions_and_the_head_after_a_merge_migration(tmp_path):
    versions = tmp_path / "open_webui" / "migrations" / "versions"
    versions.mkdir(parents=True)
    (tmp_path / "open_webui" / "__init__.py").write_text("")
    for name, text in MIGRATIONS.items():
        (versions / name).write_text('"""Revision ID: not this one"""\n' + text)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", _IMAGE_FACTS], capture_output=True, text=True, env=env, check=True)
    facts = json.loads(out.stdout.strip().splitlines()[-1])
    assert facts["revisions"] == ["a1", "b2", "c3", "d4"] and facts["heads"] == ["d4"]
