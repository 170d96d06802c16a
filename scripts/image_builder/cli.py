"""The command line: argparse, the stdout contract and the exit codes.

stdout carries only the result (JSON, or VLLM_IMAGE=/WEBUI_IMAGE=/TINY_MODEL_DIR= lines with --print-env,
so `eval "$(python3 scripts/build_images.py --print-env)"` works); progress and errors go to stderr.
Exit codes: 0 done, 1 BuildError, 2 bad arguments (argparse), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import docker
from .build import build_all, prune_old_tags
from .common import DEFAULT_TINY_MODEL_DIR, BuildError, Timer, build_lock, log
from .locks import check_locks, lock_all
from .specs import load_versions, plan
from .tiny_model import tiny_model

DESCRIPTION = "Build the local test images (no container registry needed) and the tiny model."


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=DESCRIPTION)
    ap.add_argument("command", nargs="?", default="build", choices=["build", "tiny-model", "lock"])
    ap.add_argument(
        "--print-env", action="store_true", help="print VLLM_IMAGE=... and WEBUI_IMAGE=... lines instead of JSON"
    )
    ap.add_argument(
        "--dry-run", action="store_true", help="only compute the tags and say which images exist; build nothing"
    )
    ap.add_argument(
        "--prune", action="store_true", help="also remove older tags of these images (ones in use are kept)"
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_TINY_MODEL_DIR,
        help="tiny-model: output directory (default .cache/tiny-model)",
    )
    ap.add_argument(
        "--from-cache",
        action="store_true",
        help="lock: write the lock files from the wheel sets in .cache/wheels instead of resolving afresh",
    )
    return ap


def run_command(args: argparse.Namespace, timer: Timer) -> dict:
    if args.command == "lock":
        with build_lock():
            return {**lock_all(plan(load_versions()), args.from_cache, timer), "timings": timer.timings}
    if args.dry_run:
        images = plan(load_versions())
        check_locks(images)
        docker.require_docker()
        tags = images.tags()
        return {**tags, "exists": {k: docker.image_exists(t) for k, t in tags.items()}}
    with build_lock():
        # Planned under the lock: a concurrent `lock` run may be rewriting the lock files, which are tag inputs.
        tags = build_all(plan(load_versions()), timer)
        if args.prune:
            prune_old_tags(tags)
        if args.command == "tiny-model":
            facts = tiny_model(args.out, tags["vllm"], timer)
            return {**tags, "model_dir": str(args.out.resolve()), "facts": facts, "timings": timer.timings}
        return {**tags, "timings": timer.timings}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    timer = Timer()
    try:
        result = run_command(args, timer)
    except BuildError as e:
        log(f"ERROR: {e}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130

    # A lock result has no image tags: it is JSON even with --print-env.
    if args.print_env and args.command != "lock":
        print(f"VLLM_IMAGE={result['vllm']}")
        if "webui" in result:
            print(f"WEBUI_IMAGE={result['webui']}")
        if "model_dir" in result:
            print(f"TINY_MODEL_DIR={result['model_dir']}")
    else:
        print(json.dumps(result, indent=2))
    return 0
