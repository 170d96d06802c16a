"""The soak: N switches between tiny-a and tiny-b on a serving stack while the independent prober
(tests/integration/prober.py) chats without pause. Shared by benchmarks/bench_soak.py (50
switches, by hand) and the CI test in test_resilience.py (3 switches).

It reports what an operator would want unchanged after weeks of switching: failed chats and cut
streams, the project's containers, volumes and networks and the engine's images, the journal's
size, the controller's own peak memory and the engine's (dockerd) memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker

from tests.integration import harness
from tests.integration.probe_report import ProberProcess, summarise

MODELS = ("tiny-a", "tiny-b")


@dataclass
class ControllerRun:
    """One finished controller command: its output, and the peak RSS of its process tree."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mib: float


def run_controller(root: Path, *args: str, timeout: float = 900) -> ControllerRun:
    """Run the real CLI like harness.controller, and read its peak memory from the kernel (wait4):
    the largest resident size of the controller or a `docker compose` it waited for."""
    env = {k: v for k, v in os.environ.items() if k not in ("CONTROLLER_CATALOG", "CONTROLLER_HOME")}
    start = time.monotonic()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "controller", "--project-dir", str(root), *args],
            stdout=out, stderr=err, text=True, env=env, cwd=root,
        )  # fmt: skip
        try:
            _pid, status, usage = _wait4(process, timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
        out.seek(0)
        err.seek(0)
        return ControllerRun(args, os.waitstatus_to_exitcode(status), out.read(), err.read(),
                             round(time.monotonic() - start, 1), round(usage.ru_maxrss / 1024, 1))  # fmt: skip


def _wait4(process: subprocess.Popen, timeout: float):
    # wait4 blocks without a timeout: a watchdog kills a controller that hangs past it.
    import threading

    expired = threading.Event()

    def watchdog() -> None:
        if not done.wait(timeout):
            expired.set()
            process.kill()

    done = threading.Event()
    thread = threading.Thread(target=watchdog, daemon=True)
    thread.start()
    try:
        result = os.wait4(process.pid, 0)
    finally:
        done.set()
    process.returncode = os.waitstatus_to_exitcode(result[1])
    if expired.is_set():
        raise subprocess.TimeoutExpired(process.args, timeout)
    return result


def dockerd_pid() -> int | None:
    """The Docker engine's process on this host (None when no dockerd runs here)."""
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "dockerd":
                return int(entry.name)
        except OSError:  # the process ended while we looked
            continue
    return None


def dockerd_rss_mib() -> float | None:
    """The Docker engine's resident memory, from /proc."""
    pid = dockerd_pid()
    try:
        status = Path(f"/proc/{pid}/status").read_text() if pid else ""
    except OSError:
        return None
    rss = [line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")]
    return round(int(rss[0]) / 1024, 1) if rss else None


def resource_counts(client: docker.DockerClient, project: str) -> dict[str, int]:
    """The project's containers, volumes and networks, and the engine's images (all of them)."""
    labels = {"label": f"{harness.PROJECT_LABEL}={project}"}
    return {
        "containers": len(client.containers.list(all=True, filters=labels)),
        "volumes": len(client.volumes.list(filters=labels)),
        "networks": len(client.networks.list(filters=labels)),
        "images": len(client.images.list(all=True)),
    }


@dataclass
class Soak:
    root: Path
    project: str
    url: str
    email: str
    password: str
    client: docker.DockerClient
    runs: list[ControllerRun] = field(default_factory=list)

    @property
    def journal(self) -> Path:
        return self.root / ".controller" / "journal.json"

    def run(self, switches: int, probe_out: Path, *, progress=print) -> dict:
        """Switch `switches` times from the model serving now, under the prober; the report."""
        status = json.loads(run_controller(self.root, "status", "--json").stdout)
        current = status["model"]
        before = {**resource_counts(self.client, self.project), "dockerd_rss_mib": dockerd_rss_mib(),
                  "journal_bytes": self.journal.stat().st_size}  # fmt: skip
        prober = ProberProcess.start(self.url, self.email, self.password, probe_out)
        start, times = time.time(), []
        try:
            for i in range(switches):
                target = MODELS[1] if current == MODELS[0] else MODELS[0]
                result = run_controller(self.root, "switch", target, "--json")
                self.runs.append(result)
                if result.returncode != 0:
                    raise AssertionError(f"switch {i + 1} to {target} failed:\n{result.stderr}")
                times.append(result.seconds)
                progress(f"switch {i + 1}/{switches} {current} -> {target}: {result.seconds:.1f} s, "
                         f"controller peak {result.peak_rss_mib:.0f} MiB")  # fmt: skip
                current = target
        finally:
            end = time.time()
            seen = summarise(prober.finish(), start, end)
        after = {**resource_counts(self.client, self.project), "dockerd_rss_mib": dockerd_rss_mib(),
                 "journal_bytes": self.journal.stat().st_size}  # fmt: skip
        return {
            "switches": len(times),
            "final_model": current,
            "chats": seen["chats"],
            "failed_chats": seen["failed"],
            "streams": seen["streams"],
            "truncated_streams": seen["truncated"],
            "errors": seen["errors"] + seen["stream_errors"],
            "longest_gap_s": seen["longest_gap_s"],
            "switch_s_median": sorted(times)[len(times) // 2] if times else None,
            "switch_s_max": max(times, default=None),
            "controller_peak_rss_mib": max((r.peak_rss_mib for r in self.runs), default=None),
            "before": before,
            "after": after,
        }


def changed_counts(report: dict) -> dict:
    """The counts that differ before and after ({} when the soak left nothing behind)."""
    keys = ("containers", "volumes", "networks", "images")
    return {k: (report["before"][k], report["after"][k]) for k in keys if report["before"][k] != report["after"][k]}
