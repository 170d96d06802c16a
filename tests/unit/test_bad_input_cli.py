"""Bad input, class "CLI options": values that can only cause an outage or a wrong answer.

Each case: exit 2, the message names the option or argument, no traceback, and `.env` and
`compose/` byte-identical afterwards (see bad_input_harness.py). `up` and `switch` are
refused while their options are parsed, before the lock, the settings or Docker are touched.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.unit.bad_input_harness import snapshot

CASES = {
    "up_timeout_negative": (["up", "deepseek-1.5b", "--timeout", "-1"], "--timeout"),
    "switch_timeout_negative": (["switch", "deepseek-1.5b", "--timeout", "-1"], "--timeout"),
    "switch_timeout_zero": (["switch", "deepseek-1.5b", "--timeout", "0"], "--timeout"),
    "switch_timeout_too_short": (["switch", "deepseek-1.5b", "--timeout", "5"], "--timeout"),
    "switch_timeout_nan": (["switch", "deepseek-1.5b", "--timeout", "nan"], "--timeout"),
    "switch_timeout_inf": (["switch", "deepseek-1.5b", "--timeout", "inf"], "--timeout"),
    "switch_timeout_word": (["switch", "deepseek-1.5b", "--timeout", "soon"], "--timeout"),
    "switch_strategy_unknown": (["switch", "deepseek-1.5b", "--strategy", "rolling"], "--strategy"),
    "up_lock_timeout_negative": (["up", "deepseek-1.5b", "--lock-timeout", "-1"], "--lock-timeout"),
    "up_lock_timeout_nan": (["up", "deepseek-1.5b", "--lock-timeout", "nan"], "--lock-timeout"),
    "down_lock_timeout_nan": (["down", "--lock-timeout", "nan"], "--lock-timeout"),
    "down_lock_timeout_huge": (["down", "--lock-timeout", "1e12"], "--lock-timeout"),
    "plan_max_model_len_zero": (
        ["plan", "llama3-8b", "--gpu-memory", "12GiB", "--max-model-len", "0"],
        "--max-model-len",
    ),
    "plan_max_model_len_above_context": (
        ["plan", "llama3-8b", "--gpu-memory", "12GiB", "--max-model-len", "9000"],
        "--max-model-len",
    ),
    "plan_utilization_zero": (
        ["plan", "llama3-8b", "--gpu-memory", "12GiB", "--gpu-memory-utilization", "0"],
        "--gpu-memory-utilization",
    ),
    "plan_utilization_above_one": (
        ["plan", "llama3-8b", "--gpu-memory", "12GiB", "--gpu-memory-utilization", "1.5"],
        "--gpu-memory-utilization",
    ),
    "plan_utilization_nan": (
        ["plan", "llama3-8b", "--gpu-memory", "12GiB", "--gpu-memory-utilization", "nan"],
        "--gpu-memory-utilization",
    ),
    "plan_gpu_memory_word": (["plan", "llama3-8b", "--gpu-memory", "big"], "--gpu-memory"),
    "plan_gpu_memory_zero": (["plan", "llama3-8b", "--gpu-memory", "0"], "--gpu-memory"),
    "plan_gpu_memory_inf": (["plan", "llama3-8b", "--gpu-memory", "inf"], "--gpu-memory"),
    "render_unknown_model": (["render", "nope"], "nope"),
    "render_model_with_markup": (["render", "m1[/]"], "m1[/]"),
    "switch_unknown_model": (["switch", "nope"], "nope"),
    "logs_unknown_service": (["logs", "db"], "db"),
    "down_volumes_unconfirmed": (["down", "--volumes"], "--yes"),
}


@pytest.mark.parametrize(("args", "named"), CASES.values(), ids=CASES.keys())
def test_cli_bad_option(project, args, named):
    project.refused(*args, names=[named])
    assert not (project.root / ".controller").exists() or args[0] in ("switch", "down")


def test_cli_timeout_refused_before_the_lock_and_settings(project):
    # A bad .env would also be refused; the option is checked first, so its message wins.
    project.add_env("WEBUI_PORT=0\n")
    result = project.refused("switch", "deepseek-1.5b", "--timeout", "-1", names=["--timeout"])
    assert "WEBUI_PORT" not in result.stderr
    assert not (project.root / ".controller").exists()


def test_cli_bad_option_through_the_installed_script(tmp_path):
    """The same contract from a real process, as an operator runs it."""
    (tmp_path / ".env").write_text("WEBUI_PORT=8081\n")
    before = snapshot(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "controller", "--project-dir", str(tmp_path), "switch", "x", "--timeout", "nan"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--timeout" in result.stderr and "Traceback" not in result.stderr
    assert snapshot(tmp_path) == before and not (tmp_path / ".controller").exists()
