"""The Compose target's side of `controller bench`: the launcher that runs vLLM's benchmark inside
the container (run here against a stand-in `vllm` package), the exec calls it makes, the stop
after a failure or Ctrl-C, and the facts script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from controller.bench.settings import BenchSettings, bench_argv
from controller.config.site import SiteConfig
from controller.errors import CommandError, RuntimeFailure
from controller.runtime import bench_exec
from controller.runtime.bench_exec import LAUNCHER
from controller.runtime.compose_target import ComposeTarget
from tests.unit._support import DUMMY_SECRETS, fixed_settings

# A stand-in for the two functions `vllm bench serve` calls, with the same names and modules:
# it records the key it was given and writes a result the way --save-result does.
FAKE_VLLM = {
    "vllm/__init__.py": "",
    "vllm/utils/__init__.py": "",
    "vllm/utils/argparse_utils.py": "from argparse import ArgumentParser as FlexibleArgumentParser\n",
    "vllm/benchmarks/__init__.py": "",
    "vllm/benchmarks/serve.py": textwrap.dedent(
        """
        import json, os
        def add_cli_args(parser):
            for flag in ("--model", "--max-concurrency", "--result-dir", "--result-filename", "--num-prompts"):
                parser.add_argument(flag)
            parser.add_argument("--save-result", action="store_true")
        def main(args):
            with open(os.path.join(args.result_dir, args.result_filename), "w") as f:
                json.dump({"max_concurrency": int(args.max_concurrency), "key": os.environ.get("OPENAI_API_KEY"),
                           "offline": os.environ.get("HF_HUB_OFFLINE")}, f)
        """
    ),
}


def _fake_vllm(root: Path) -> Path:
    for name, text in FAKE_VLLM.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_launcher_runs_every_level_with_the_key_from_the_environment(tmp_path):
    lib = _fake_vllm(tmp_path / "lib")
    results = tmp_path / "results"
    runs = [["--model", "tiny-a", "--max-concurrency", str(level), "--result-dir", str(results),
             "--result-filename", f"concurrency-{level}.json", "--save-result"] for level in (1, 4)]  # fmt: skip
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(lib), "VLLM_API_KEY": "the-key"}
    done = subprocess.run([sys.executable, "-c", LAUNCHER, str(results), "60", json.dumps(runs)], env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "@@controller-bench done 1" in done.stdout and "@@controller-bench done 4" in done.stdout
    for level in (1, 4):
        saved = json.loads((results / f"concurrency-{level}.json").read_text())
        assert saved == {"max_concurrency": level, "key": "the-key", "offline": "1"}
    assert (results / "launcher.pid").read_text().isdigit()


class RecordingProject:
    """ComposeProject.exec, recorded; `fail` raises for argv containing it."""

    def __init__(self, fail: BaseException | None = None):
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.fail = fail

    def exec(self, service: str, *argv: str, timeout: float | None = None):
        self.calls.append((service, argv))
        if self.fail is not None and argv[:2] == ("python3", "-c") and argv[2] == LAUNCHER:
            raise self.fail
        return subprocess.CompletedProcess(argv, 0, json.dumps({"max_concurrency": 1}), "")


def _target(tmp_path, project: RecordingProject) -> ComposeTarget:
    target = ComposeTarget(SiteConfig(root=tmp_path, env_file=tmp_path / ".env"), fixed_settings())
    target.project = project
    target.slot = "vllm-b"
    return target


def _runs() -> list[list[str]]:
    settings = BenchSettings(levels=(1,), input_len=8, output_len=8)
    return [bench_argv(settings, 1, served_model_name="m", tokenizer="/models/m", result_dir="/tmp/r/m")]


def test_bench_serve_runs_in_the_active_slot_and_reads_each_result_back(tmp_path):
    project = RecordingProject()
    texts = _target(tmp_path, project).bench_serve(_runs(), result_dir="/tmp/r/m", timeout_s=100)
    assert [json.loads(t)["max_concurrency"] for t in texts] == [1]
    (service, launch), (_, read) = project.calls
    assert service == "vllm-b" and launch[:3] == ("python3", "-c", LAUNCHER)
    assert launch[3:5] == ("/tmp/r/m", "100")
    assert read == ("cat", "/tmp/r/m/concurrency-1.json")
    flat = " ".join(arg for _, argv in project.calls for arg in argv)
    assert not any(secret in flat for secret in DUMMY_SECRETS.values())


@pytest.mark.parametrize(
    "failure", [CommandError(["docker"], 1, "", "Traceback\nValueError: boom"), KeyboardInterrupt()]
)
def test_a_failed_or_interrupted_benchmark_is_stopped_inside_the_container(tmp_path, failure):
    project = RecordingProject(fail=failure)
    expected = RuntimeFailure if isinstance(failure, CommandError) else KeyboardInterrupt
    with pytest.raises(expected) as caught:
        _target(tmp_path, project).bench_serve(_runs(), result_dir="/tmp/r/m", timeout_s=100)
    assert project.calls[-1] == ("vllm-b", ("python3", "-c", bench_exec._STOP, "/tmp/r/m/launcher.pid"))
    if expected is RuntimeFailure:
        assert "ValueError: boom" in caught.value.details


def test_the_stop_script_ends_the_launcher_by_its_pid(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    (tmp_path / "launcher.pid").write_text(str(sleeper.pid))
    subprocess.run([sys.executable, "-c", bench_exec._STOP, str(tmp_path / "launcher.pid")], check=True, timeout=30)
    assert sleeper.wait(timeout=10) != 0
    # No pid file (the launcher never started): nothing to stop, no error.
    subprocess.run([sys.executable, "-c", bench_exec._STOP, str(tmp_path / "absent.pid")], check=True, timeout=30)


def test_the_facts_script_reads_the_machine_without_vllm():
    done = subprocess.run([sys.executable, "-c", bench_exec._FACTS], capture_output=True, text=True, timeout=60,
                          check=True)  # fmt: skip
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(facts) == {"vllm_version", "cpu", "cpu_count", "memory_gib", "gpus"}
    assert facts["cpu_count"] >= 1 and isinstance(facts["gpus"], list)
