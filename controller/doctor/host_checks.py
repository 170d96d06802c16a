"""`controller doctor`'s checks of everything but the GPU: the Docker engine, Compose, the
images, disk for the weights, the Web UI port, `.env` and, with OFFLINE=true, that nothing needs
downloading (pure).
"""

from __future__ import annotations

from controller.config.backups import STALE_AFTER_S
from controller.config.certificates import EXPIRY_WARNING_DAYS
from controller.config.profile import Profile
from controller.doctor.records import (
    FAIL,
    OK,
    WARN,
    BackupFacts,
    Check,
    DiskFacts,
    DockerFacts,
    EnvFacts,
    Facts,
    ImageFacts,
    PortFacts,
    dotted,
    parse_version,
)
from controller.planner.engine import GIB
from controller.planner.model_memory import weight_bytes
from controller.runtime.host import weights_fit

# The oldest engine this stack is run and tested on (Debian's docker.io 20.10, API 1.41).
MIN_ENGINE = (20, 10)
# `docker compose pull --policy missing`, which `up` runs, came with Compose 2.22.0.
MIN_COMPOSE = (2, 22)


def check_engine(docker: DockerFacts) -> Check:
    name = "Docker engine"
    if docker.engine_error or not docker.engine_version:
        return Check(name, FAIL, f"cannot reach the Docker engine: {docker.engine_error or 'no version'}",
                     "start it (systemctl start docker) and check this user may use /var/run/docker.sock")  # fmt: skip
    version = parse_version(docker.engine_version)
    if version[:2] < MIN_ENGINE:
        return Check(name, FAIL, f"Docker {docker.engine_version} is older than {dotted(MIN_ENGINE)}",
                     f"upgrade Docker Engine to {dotted(MIN_ENGINE)} or newer")  # fmt: skip
    return Check(name, OK, f"Docker {docker.engine_version} (at least {dotted(MIN_ENGINE)})")


def check_compose(docker: DockerFacts) -> Check:
    name = "Compose v2"
    fix = f"install the docker-compose-plugin package (Compose {dotted(MIN_COMPOSE)} or newer)"
    if docker.compose_error or not docker.compose_version:
        return Check(name, FAIL, f"`docker compose` does not work: {docker.compose_error or 'no version'}", fix)
    if parse_version(docker.compose_version)[:2] < MIN_COMPOSE:
        return Check(name, FAIL, f"Compose {docker.compose_version} is older than {dotted(MIN_COMPOSE)} "
                     "(`pull --policy missing`)", fix)  # fmt: skip
    return Check(name, OK, f"Compose {docker.compose_version} (at least {dotted(MIN_COMPOSE)})")


def check_image(image: ImageFacts) -> Check:
    name = f"{image.role} image"
    details = {"image": image.image, "present": image.present, "pullable": image.pullable, "error": image.error}
    if image.present:
        return Check(name, OK, f"{image.image} is on this machine", details=details)
    if image.pullable:
        return Check(name, WARN, f"{image.image} is not on this machine; `up` pulls it",
                     "nothing to do, or pull it now (`docker pull`) to start faster", details)  # fmt: skip
    # The engine's error ends in its cause ("...: no such host"); all of it is in details.
    why = f" ({image.error.rsplit(': ', 1)[-1]})" if image.error else ""
    return Check(
        name, FAIL, f"{image.image} is not on this machine and its registry does not answer{why}",
        f"bring it with `controller bundle load` (or `docker load`), or set {image.setting} in .env to an "
        "image on this machine", details,
    )  # fmt: skip


def check_disk(profile: Profile, disk: DiskFacts) -> Check:
    """Free disk for the HF cache against the profile's weights; a local model needs none."""
    name = "disk for weights"
    local = profile.local_path
    if local is not None:
        if not disk.local_model_found:
            return Check(name, FAIL, f"the local model directory {local} does not exist",
                         "download the weights there first, or use a Hugging Face id")  # fmt: skip
        return Check(name, OK, f"serves the local directory {local}; nothing to download")
    need = weight_bytes(profile)
    details = {"free_gib": round(disk.free_bytes / GIB, 1), "weights_gib": round(need / GIB, 1),
               "cached": disk.model_cached, "path": str(disk.checked_at)}  # fmt: skip
    free = f"{disk.free_bytes / GIB:.1f} GiB free at {disk.checked_at}"
    if disk.model_cached:
        return Check(name, OK, f"{profile.model} is in the HF cache ({disk.cache_dir}); {free}", details=details)
    if not weights_fit(disk.free_bytes, need):
        return Check(name, FAIL, f"{free}; the weights of {profile.model} need about {need / GIB:.1f} GiB",
                     "free disk space, or set HF_CACHE_DIR in .env to a larger disk", details)  # fmt: skip
    return Check(name, OK, f"{free}; the weights need about {need / GIB:.1f} GiB", details=details)


def check_port(port: PortFacts) -> Check:
    name = "Web UI port"
    where = f"{port.address}:{port.port} (WEBUI_PORT)"
    fix = "stop it, or set WEBUI_PORT in .env to a free port"
    if port.foreign:
        return Check(name, FAIL, f"{where} is published by container {', '.join(port.foreign)}", fix)
    if port.ours:
        return Check(name, OK, f"{where} is held by this stack ({', '.join(port.ours)})")
    if port.program:
        return Check(name, FAIL, f"{where} is in use by a program outside Docker",
                     "find it with `ss -ltnp`; " + fix)  # fmt: skip
    return Check(name, OK, f"{where} is free")


def check_settings(profile: Profile, env: EnvFacts) -> list[Check]:
    """.env: valid, mode 0600, its secrets present, and HF_TOKEN for a gated model."""
    checks = []
    if env.settings_error:
        checks.append(Check("settings", FAIL, env.settings_error, env.settings_hint or f"correct {env.path}"))
    if not env.exists:
        checks.append(Check(".env", OK, f"{env.path} does not exist yet: `up` creates it with generated "
                            "secrets (mode 0600)"))  # fmt: skip
    elif env.mode is not None and env.mode & 0o077:
        checks.append(Check(".env", FAIL, f"{env.path} has mode {env.mode:04o}: other users can read its secrets",
                            f"chmod 600 {env.path}", {"mode": f"{env.mode:04o}"}))  # fmt: skip
    else:
        mode = f"{env.mode:04o}" if env.mode is not None else "?"
        checks.append(Check(".env", OK, f"{env.path} has mode {mode}", details={"mode": mode}))
    if env.exists and env.missing_secrets:
        checks.append(Check(
            "secrets", WARN, f"not set yet: {', '.join(env.missing_secrets)}; `up` generates them into .env",
            f"to have them now: `controller render {profile.name}`",
        ))  # fmt: skip
    elif env.exists:
        checks.append(Check("secrets", OK, "the admin password, Web UI secret key and vLLM API key are set"))
    if profile.gated:
        if env.hf_token_set:
            checks.append(Check("HF_TOKEN", OK, f"set for the gated model {profile.model}"))
        else:
            checks.append(Check(
                "HF_TOKEN", FAIL, f"{profile.model} is a gated Hugging Face repository and HF_TOKEN is not set",
                f"accept the licence on huggingface.co, create a read token and set HF_TOKEN=... in {env.path}",
            ))  # fmt: skip
    return checks


def offline_checks(profile: Profile, facts: Facts, *, offline: bool) -> list[Check]:
    """With OFFLINE=true nothing may be downloaded: every image and the weights must be here.

    The fixes name the bundle commands (controller.lifecycle.offline), the one verified way to bring both.
    """
    from controller.lifecycle.offline import BUNDLE_HINT

    hint = BUNDLE_HINT.format(profile=profile.name)
    if not offline:
        return []
    checks = []
    missing = [i.image for i in facts.images if not i.present]
    if missing:
        checks.append(Check("offline: images", FAIL, f"OFFLINE=true and not on this machine: {', '.join(missing)}",
                            hint))  # fmt: skip
    else:
        checks.append(Check("offline: images", OK, "every image is on this machine"))
    if profile.local_path is not None:
        return checks
    if facts.disk is not None and facts.disk.model_cached:
        checks.append(Check("offline: weights", OK, f"{profile.model} is in the HF cache"))
    else:
        checks.append(Check(
            "offline: weights", FAIL, f"OFFLINE=true and {profile.model} is not in the HF cache",
            hint,
        ))  # fmt: skip
    return checks


def check_tls(env: EnvFacts) -> Check:
    """Passwords cross the network in clear text without HTTPS; a certificate must be renewed in time."""
    if env.tls_mode == "off":
        return Check("https", WARN, "TLS=off: Open WebUI is served on plain HTTP, so passwords cross the "
                     "network in clear text", "set TLS=internal (or files, acme) and TLS_HOST in .env (README, "
                     "HTTPS)")  # fmt: skip
    if env.tls_days_left is not None and env.tls_days_left < EXPIRY_WARNING_DAYS:
        return Check("https", WARN, f"the certificate in TLS_CERT_FILE expires in {env.tls_days_left} days",
                     "renew it; `controller up MODEL` then serves the new one")  # fmt: skip
    return Check("https", OK, f"TLS={env.tls_mode}: Caddy serves https://{env.tls_host}")


def check_backup(backup: BackupFacts) -> Check:
    """Open WebUI's volume holds the only copy of every user and chat."""
    name = "backup"
    fix = "run `controller backup --keep 14` now, and nightly from cron or a systemd timer (README, Backups)"
    if backup.newest is None or backup.age_s is None:
        return Check(
            name, WARN, f"no backup in {backup.folder}: the Open WebUI volume is the only copy of users and chats", fix
        )
    age_h = backup.age_s / 3600
    if backup.age_s > STALE_AFTER_S:
        return Check(name, WARN, f"the newest backup is {age_h:.0f} h old ({backup.newest})", fix)
    return Check(name, OK, f"the newest backup is {age_h:.1f} h old ({backup.newest})")
