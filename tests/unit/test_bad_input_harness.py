"""Proof that the bad-input harness (bad_input_harness.py) can see success and changes, not only
refusals: otherwise every bad-input case could pass for the wrong reason."""

from __future__ import annotations

from tests.unit.bad_input_harness import snapshot

# ----- the harness sees success and changes -------------------------------------------------------


def test_harness_sees_a_good_render_succeed_and_change_compose(project):
    before = snapshot(project.root)
    result = project.run("--catalog", str(project.profile()), "render", "mine")
    assert result.code == 0, result.stderr
    after = snapshot(project.root)
    assert after["compose/docker-compose.yml"] != before["compose/docker-compose.yml"]
    assert after[".env"][1] == before[".env"][1]  # every secret was there already: values kept


def test_harness_sees_a_weak_value_refused(project):
    project.add_env("WEBUI_PORT=0\n")
    project.refused("render", "deepseek-1.5b", names=["WEBUI_PORT", ".env line 5"])
