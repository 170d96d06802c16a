"""What every module shares: the repo layout, the error type, the stderr log and the phase timer."""

from __future__ import annotations

import contextlib
import fcntl
import sys
import time
from collections.abc import Iterator
from pathlib import Path

# scripts/image_builder/common.py -> the checkout root.
REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"
VERSIONS_FILE = IMAGES / "versions.env"
CACHE = REPO / ".cache"
WHEELS = CACHE / "wheels"
BUILD = CACHE / "build"
LOGS = CACHE / "logs"
TINY_MODEL_SCRIPT = REPO / "scripts" / "make_tiny_model.py"
DEFAULT_TINY_MODEL_DIR = CACHE / "tiny-model"

PREFIX = "[build-images]"


class BuildError(Exception):
    """A failure the CLI reports on stderr as one ERROR line (exit 1) instead of a traceback."""


def log(msg: str) -> None:
    # stdout is reserved for the JSON / --print-env result that callers parse.
    print(f"{PREFIX} {msg}", file=sys.stderr, flush=True)


def rel(path: Path) -> Path:
    """`path` relative to the checkout for messages; unchanged when it lies elsewhere (unit tests' tmp dirs)."""
    try:
        return path.relative_to(REPO)
    except ValueError:
        return path


@contextlib.contextmanager
def build_lock() -> Iterator[None]:
    """Serialise concurrent runs (e.g. two test sessions) on this checkout."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "build-images.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("another build_images.py run holds .cache/build-images.lock; waiting")
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


class Timer:
    """Seconds and outcome of each phase; the CLI puts them under "timings" in its JSON."""

    def __init__(self) -> None:
        self.timings: dict[str, dict] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[dict[str, str]]:
        # The body sets state["status"] (cached, downloaded, ...); an exception marks the phase failed.
        state = {"status": "built"}
        start = time.monotonic()
        try:
            yield state
        except BaseException:
            state["status"] = "failed"
            raise
        finally:
            secs = round(time.monotonic() - start, 1)
            self.timings[name] = {"seconds": secs, "status": state["status"]}
            log(f"{name}: {secs} s ({state['status']})")
