"""The one subprocess seam: every external command (docker, pip, debootstrap, tar) starts here."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .common import BuildError


def run(
    cmd: list[str], *, log_file: Path | None = None, env: dict | None = None, check: bool = True, **kw
) -> subprocess.CompletedProcess:
    """Run cmd; with log_file, append its output there and quote the log's tail in the error if it fails."""
    if log_file is None:
        return subprocess.run(cmd, check=check, env=env, **kw)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n".encode())
        fh.flush()
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, **kw)
    if check and proc.returncode != 0:
        tail = log_file.read_text(errors="replace").splitlines()[-40:]
        raise BuildError(
            f"command failed (exit {proc.returncode}): {' '.join(cmd)}\n"
            f"--- last lines of {log_file} ---\n" + "\n".join(tail)
        )
    return proc


def succeeds(cmd: list[str]) -> bool:
    """Whether cmd exits 0, its output discarded (a probe, not a step)."""
    return run(cmd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def image_exists(tag: str) -> bool:
    return succeeds(["docker", "image", "inspect", tag])


def require_docker() -> None:
    if shutil.which("docker") is None:
        raise BuildError("`docker` is not installed (run scripts/ensure-docker.sh as root)")
    proc = run(["docker", "info"], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise BuildError(
            "the Docker engine is not reachable (`docker info` failed; run "
            "scripts/ensure-docker.sh as root):\n" + proc.stderr.strip()
        )


def _client_major(docker: str) -> int | None:
    proc = run(
        [docker, "version", "--format", "{{.Client.Version}}"],
        check=False,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        return int(proc.stdout.strip().split(".")[0])
    except ValueError:
        return None


def buildkit_client() -> str:
    """A docker CLI that can do a BuildKit build (RUN --mount) against this daemon.

    Docker CLIs >= 23 refuse DOCKER_BUILDKIT=1 without the buildx plugin; the 20.10
    CLI (Debian's docker.io) has BuildKit built in. A host may have both on PATH
    (e.g. a newer /usr/local/bin/docker shadowing /usr/bin/docker), so try each.
    """
    seen: list[str] = []
    for d in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/bin"]:
        cand = os.path.join(d or ".", "docker")
        if not (os.path.isfile(cand) and os.access(cand, os.X_OK)):
            continue
        real = os.path.realpath(cand)
        if real in seen:
            continue
        seen.append(real)
        if succeeds([cand, "buildx", "version"]):
            return cand
        major = _client_major(cand)
        if major is not None and major < 23:
            return cand
    raise BuildError(
        "no docker CLI here can run a BuildKit build: CLIs >= 23 need the buildx plugin "
        f"(none found), and no 20.10-era CLI is on PATH (checked: {', '.join(seen) or 'none'}). "
        "Install docker-buildx or Debian's docker.io CLI."
    )


def import_rootfs(rootfs: Path, tag: str, changes: list[str], log_file: Path) -> None:
    """`tar -c rootfs | docker import --change ... - tag`, streamed (the rootfs is never tarred to disk)."""
    cmd = ["docker", "import"]
    for ch in changes:
        cmd += ["--change", ch]
    cmd += ["-", tag]
    with open(log_file, "ab") as fh:
        # --numeric-owner: the host's user names must not remap the rootfs' uids.
        tar = subprocess.Popen(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE, stderr=fh
        )
        imp = subprocess.run(cmd, stdin=tar.stdout, stdout=fh, stderr=subprocess.STDOUT)
        tar.stdout.close()
        tar_rc = tar.wait()
    if tar_rc != 0 or imp.returncode != 0:
        raise BuildError(f"tar | docker import failed (tar {tar_rc}, import {imp.returncode}); see {log_file}")


def repo_tags(repo: str) -> list[str]:
    """Every <repo>:<tag> the daemon holds for one repository."""
    listing = run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", repo],
        check=False,
        stdout=subprocess.PIPE,
        text=True,
    )
    return listing.stdout.split()


def remove_image(tag: str) -> bool:
    """docker rmi; False when the daemon refuses (e.g. a container still uses it)."""
    return succeeds(["docker", "rmi", tag])
