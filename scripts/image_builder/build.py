"""Build the base image and the app images; an image whose tag already exists is not rebuilt.

A second run (or a fresh clone on a host that has the images) therefore takes seconds, and its wheels
are not even downloaded.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from . import docker
from .common import BUILD, CACHE, LOGS, BuildError, Timer, log
from .locks import check_locks, ensure_wheels
from .specs import AppSpec, BaseSpec, ImagePlan, data_lines


def require_debootstrap() -> None:
    if shutil.which("debootstrap") is None and not Path("/usr/sbin/debootstrap").exists():
        raise BuildError(
            "`debootstrap` is not installed; it is needed to build the base "
            "image (apt-get install debootstrap, or run scripts/ensure-docker.sh)"
        )
    if os.geteuid() != 0:
        raise BuildError("building the base image with debootstrap needs root")


def build_base(spec: BaseSpec, timer: Timer) -> str:
    # Changing this recipe does not change images/base/: bump specs.BASE_RECIPE_VERSION with it.
    tag = spec.tag
    with timer.phase(spec.key) as st:
        if docker.image_exists(tag):
            st["status"] = "cached"
            return tag
        require_debootstrap()
        log(f"building {tag} with debootstrap (about 40 s)")
        tmp_root = CACHE / "tmp"
        tmp_root.mkdir(parents=True, exist_ok=True)
        rootfs = Path(tempfile.mkdtemp(prefix="rootfs-", dir=tmp_root))
        # One .deb cache per image: the debootstrap runs go side by side, and with one shared cache
        # directory one of four failed while retrieving packages, without a message, in two fresh runs.
        debs = CACHE / "debootstrap-debs" / spec.key
        debs.mkdir(parents=True, exist_ok=True)
        logf = LOGS / f"{spec.key}.log"
        try:
            docker.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--cache-dir={debs}",
                    "--include=" + ",".join(spec.packages),
                    spec.suite,
                    str(rootfs),
                    spec.mirror,
                ],
                log_file=logf,
            )
            # The .debs stay in --cache-dir for the next run; the image does not need them or the apt lists.
            for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
                d = rootfs / junk
                if d.is_dir():
                    for p in d.iterdir():
                        if p.is_file():
                            p.unlink()
            for link, target in spec.links:
                (rootfs / link.lstrip("/")).symlink_to(target)
            docker.import_rootfs(rootfs, tag, data_lines(spec.dir / "image-config.txt"), logf)
        finally:
            shutil.rmtree(rootfs, ignore_errors=True)
        return tag


def stage_context(name: str, src_dir: Path, wheels: Path) -> Path:
    """Build context = images/<name>/ files + wheels/ (hard links, so it is cheap)."""
    ctx = BUILD / name
    if ctx.exists():
        shutil.rmtree(ctx)
    shutil.copytree(src_dir, ctx)
    (ctx / "wheels").mkdir()
    for whl in wheels.iterdir():
        if whl.name.startswith("."):  # the .complete.json stamp is not a wheel
            continue
        target = ctx / "wheels" / whl.name
        try:
            os.link(whl, target)
        except OSError:  # another filesystem
            shutil.copy2(whl, target)
    return ctx


def build_app_image(spec: AppSpec, base: Future[str], timer: Timer) -> str:
    """Download the image's wheels (they need no image, so this runs while the base builds), then
    build it on its parent (`base`: the base image, or the app image it is built on) once that is ready."""
    name, tag = spec.key, spec.tag
    if docker.image_exists(tag):
        with timer.phase(name) as st:
            st["status"] = "cached"
        return tag
    wheels = ensure_wheels(spec, timer)
    base_tag = base.result()
    with timer.phase(name) as st:
        log(f"building {tag} (log: {LOGS / (name + '.log')})")
        ctx = stage_context(name, spec.dir, wheels)
        cmd = [
            docker.buildkit_client(),
            "build",
            "--progress=plain",
            "-t",
            tag,
            "--label",
            f"controller-test.inputs={tag.rsplit(':', 1)[1]}",
            "--build-arg",
            f"BASE_IMAGE={base_tag}",
        ]
        for k, v in spec.build_args:
            cmd += ["--build-arg", f"{k}={v}"]
        cmd.append(str(ctx))
        env = dict(os.environ, DOCKER_BUILDKIT="1")
        try:
            docker.run(cmd, log_file=LOGS / f"{name}.log", env=env)
        finally:
            shutil.rmtree(ctx, ignore_errors=True)
        st["status"] = "built"
    return tag


def build_all(plan: ImagePlan, timer: Timer) -> dict[str, str]:
    check_locks(plan)
    docker.require_docker()
    # Side by side: the base and every app's wheel download, then the app images. On a fresh 2-core
    # machine this takes about 4 minutes instead of 7 one after another (README, "Tests").
    with ThreadPoolExecutor(max_workers=1 + len(plan.services) + len(plan.apps)) as pool:
        jobs = {"base": pool.submit(build_base, plan.base, timer)}
        for service in plan.services:
            jobs[service.key] = pool.submit(build_base, service, timer)
        for spec in plan.apps:  # a parent is submitted before the images built on it
            jobs[spec.key] = pool.submit(build_app_image, spec, jobs[spec.parent], timer)
        return {key: job.result() for key, job in jobs.items()}


def prune_old_tags(current: dict[str, str]) -> None:
    """Remove the other tags of these images' repositories; the daemon keeps ones a container uses."""
    keep = set(current.values())
    for tag in current.values():
        for old in docker.repo_tags(tag.rsplit(":", 1)[0]):
            if old not in keep:
                log(f"prune {old}: {'removed' if docker.remove_image(old) else 'kept (in use?)'}")
