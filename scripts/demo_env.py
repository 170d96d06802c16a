"""Point this checkout's .env at the locally built images and the tiny test catalog (for `make demo`).

Secrets already in .env stay; only CONTROLLER_CATALOG, VLLM_CPU_IMAGE and WEBUI_IMAGE are (re)set,
so that plain `controller status`, `controller switch tiny-b` and `controller down` work afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from controller.config.envfile import write_env_values

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    built = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_images.py")], capture_output=True, text=True, check=False
    )
    if built.returncode != 0:
        sys.stderr.write(built.stderr)
        return built.returncode
    images = json.loads(built.stdout)
    values = {
        "CONTROLLER_CATALOG": "tests/catalog/tiny.yaml",
        "VLLM_CPU_IMAGE": images["vllm"],
        "WEBUI_IMAGE": images["webui"],
    }
    env_file = REPO / ".env"
    write_env_values(env_file, values, overwrite=True)
    for key, value in values.items():
        print(f"{env_file}: {key}={value}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
