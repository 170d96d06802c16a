"""The two sites of the air-gapped tests and benchmark: a "connected" one whose HF cache holds the tiny
model in the real hub layout under a made-up repo id, and an "offline" one that starts with an empty
cache and no catalog. Shared by tests/integration/test_bundle.py and benchmarks/bench_bundle.py."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import docker.errors
import yaml

from controller.bundle.format import IMAGES_MEMBER, read_chunks
from controller.bundle.reader import open_bundle
from controller.config.site import SiteConfig
from tests.integration import harness
from tests.unit._support import make_hub_cache

HF_ID = "ctest-org/tiny-llama"
REVISION = "5f1c2a3b4d5e6f708192a3b4c5d6e7f801234567"


def hf_catalog(path: Path) -> Path:
    """tiny-a and tiny-b of the test catalog, but serving HF_ID from the HF cache."""
    tiny = yaml.safe_load(harness.TEST_CATALOG.read_text())["profiles"]
    profiles = {
        f"{name}-hf": {**tiny[name], "model": HF_ID, "served_model_name": f"{name}-hf"} for name in ("tiny-a", "tiny-b")
    }
    path.write_text(yaml.safe_dump({"profiles": profiles}))
    return path


class OfflineSite:
    def __init__(self, root: Path, images: dict):
        self.root = root
        self.project = f"{harness.TEST_PROJECT_PREFIX}offline-{uuid.uuid4().hex[:6]}"
        self.port = harness.free_port()
        root.mkdir()
        # What an operator starts with on the offline box: image names and an empty cache, no catalog.
        harness.write_site_env(root / ".env", project=self.project, port=self.port, images=images,
                               hf_cache=root / "hf-cache")  # fmt: skip
        text = (root / ".env").read_text().splitlines()
        (root / ".env").write_text("\n".join(line for line in text if not line.startswith("CONTROLLER_CATALOG")) + "\n")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def site(self) -> SiteConfig:
        return SiteConfig(root=self.root, env_file=self.root / ".env")

    def settings(self):
        from controller.config.settings import load_settings
        from controller.config.site import SiteConfig

        return load_settings(SiteConfig(root=self.root, env_file=self.root / ".env"), generate=False)

    def controller(self, *args: str, timeout: float = 900):
        return harness.controller(self.root, *args, timeout=timeout)


def restore_images(client, images: dict, ids: dict, bundle: Path) -> None:
    """Put the shared test images back: from the bundle when it holds them, else rebuild them."""

    def missing() -> list[str]:
        gone = []
        for key in ("vllm", "webui"):
            try:
                if client.images.get(images[key]).id != ids[key]:
                    gone.append(key)
            except docker.errors.ImageNotFound:
                gone.append(key)
        return gone

    if not missing():
        return
    try:
        reader = open_bundle(bundle)
        with reader.open(IMAGES_MEMBER) as stream:
            client.images.load(read_chunks(stream))
        reader.close()
    except Exception as exc:  # noqa: BLE001 - any failure here falls back to the rebuild below
        print(f"restoring the images from {bundle} failed ({exc}); rebuilding them")
    if missing():
        subprocess.run([sys.executable, str(harness.REPO / "scripts" / "build_images.py")], check=True,
                       capture_output=True)  # fmt: skip
    assert not missing(), "the shared test images could not be restored"


def connected_site(root: Path, images: dict, tiny_model: Path) -> tuple[Path, Path]:
    """A site whose HF cache holds the tiny model as HF_ID at REVISION; returns (root, its catalog)."""
    root.mkdir()
    cache = root / "hf-cache"
    make_hub_cache(cache, HF_ID, REVISION, {p.name: p for p in sorted(tiny_model.iterdir()) if p.is_file()})
    harness.write_site_env(root / ".env", project=f"{harness.TEST_PROJECT_PREFIX}unused", port=1, images=images,
                           hf_cache=cache)  # fmt: skip
    return root, hf_catalog(root / "catalog.yaml")
