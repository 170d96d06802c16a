"""The README's `controller bench` table and picture, from the two tiny CPU test models.

Starts tiny-a on a scratch CPU stack, runs `controller bench tiny-a tiny-b` with the settings
below (the controller's own table goes to the terminal), then copies the saved report next to
this repository's docs and screenshots it with the test browser (Debian's Chromium).

    .venv/bin/python benchmarks/bench_models_cpu.py [--levels 1,2,4] [--input-len 32] [--output-len 16]
        [--out docs/bench-cpu]

CPU figures of random-weight tiny models: they show the table, not the speed of any real model.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration import harness  # noqa: E402
from tests.integration import webui_page as ui  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="1,2,4")
    parser.add_argument("--input-len", default="32")
    parser.add_argument("--output-len", default="16")
    parser.add_argument("--out", type=Path, default=Path("docs/bench-cpu"))
    args = parser.parse_args()
    client = docker.from_env()
    images = harness.images_and_tiny_model()
    with harness.scratch_site(client, images) as (root, _name, _port):
        up = harness.controller(root, "up", "tiny-a")
        if up.returncode != 0:
            raise SystemExit(up.stderr)
        bench = ["bench", "tiny-a", "tiny-b", "--levels", args.levels, "--input-len", args.input_len,
                 "--output-len", args.output_len]  # fmt: skip
        table = harness.controller(root, *bench, timeout=3600)
        if table.returncode != 0:
            raise SystemExit(table.stderr)
        print(table.stdout + table.stderr)
        saved = sorted((root / ".controller" / "bench").glob("*.json"))[-1]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(saved, args.out.with_suffix(".json"))
        shutil.copy(saved.with_suffix(".html"), args.out.with_suffix(".html"))
    with ui.chromium() as browser:
        # The charts and the table; the page's last section (vLLM's argument lists) runs wide.
        page = browser.new_page(viewport={"width": 860, "height": 1260})
        page.goto(args.out.with_suffix(".html").resolve().as_uri())
        page.screenshot(path=str(args.out.with_suffix(".png")))
    print(json.dumps({"json": str(args.out.with_suffix(".json")), "html": str(args.out.with_suffix(".html")),
                      "png": str(args.out.with_suffix(".png"))}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
