"""Benchmark: an air-gapped install with the CPU test models: `bundle create` (real `docker save` of the
vLLM CPU and Open WebUI images, the tiny model from a hub-layout HF cache), its size, `bundle load` after
the images and cache were removed, and the time from the start of `bundle load` to a working chat
(`bundle load` + `controller up` with OFFLINE=true). Prints each run and the median.

The shared test images are removed and loaded back in each run (and restored at the end however it
ends), so run it under the engine lock like the integration tests:

    flock /tmp/engine.lock .venv/bin/python benchmarks/bench_bundle.py [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration import harness  # noqa: E402
from tests.integration.bundle_sites import OfflineSite, connected_site, restore_images  # noqa: E402


def _timed(label: str, site_root: Path, *args: str) -> float:
    start = time.monotonic()
    result = harness.controller(site_root, *args, timeout=1800)
    if result.returncode != 0:
        raise SystemExit(f"{label} failed:\n{result.stderr}")
    return time.monotonic() - start


def one_run(client: docker.DockerClient, images: dict, tiny_model: Path, tmp: Path) -> dict[str, float]:
    bundle = tmp / "site.bundle"
    connected, catalog = connected_site(tmp / "connected", images, tiny_model)
    offline = OfflineSite(tmp / "offline", images)
    ids = {key: client.images.get(images[key]).id for key in ("vllm", "webui")}
    try:
        create_s = _timed("bundle create", connected, "--catalog", str(catalog), "bundle", "create", "tiny-a-hf",
                          "tiny-b-hf", "-o", str(bundle))  # fmt: skip
        size_gb = bundle.stat().st_size / 1e9
        for key in ("vllm", "webui"):
            client.images.remove(images[key])
        load_s = _timed("bundle load", offline.root, "bundle", "load", str(bundle), "--yes")
        up_s = _timed("controller up", offline.root, "up", "tiny-a-hf")  # waits for a chat through Open WebUI
        return {"create_s": create_s, "size_gb": size_gb, "load_s": load_s, "load_to_chat_s": load_s + up_s}
    finally:
        harness.remove_project(client, offline.project)
        restore_images(client, images, ids, bundle)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    client = docker.from_env()
    images = harness.build_images()
    tiny_model = harness.build_tiny_model()
    runs = []
    for number in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:  # the bundle is ~7 GB: not on a tmpfs
            run = one_run(client, images, tiny_model, Path(tmp))
        runs.append(run)
        print(
            f"run {number}: create {run['create_s']:.1f} s, size {run['size_gb']:.2f} GB, "
            f"load {run['load_s']:.1f} s, load to working chat {run['load_to_chat_s']:.1f} s",
            flush=True,
        )
    print(f"median of {len(runs)} runs: " + ", ".join(
        f"{key} {statistics.median(r[key] for r in runs):.2f}" for key in runs[0]))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
