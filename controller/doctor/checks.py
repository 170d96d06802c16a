"""`controller doctor`: what on this machine would stop `up` for a profile, check by check (pure).

Each check reads the facts that controller.doctor.facts gathered and returns ok, warn or fail with
a one-line finding and a one-line fix. Nothing here touches the machine, so every conclusion is
unit-tested from recorded outputs (tests/unit/data/nvidia-smi/). The checks themselves are in
controller.doctor.gpu_checks and controller.doctor.host_checks; their inputs and Check in
controller.doctor.records.
"""

from __future__ import annotations

from dataclasses import asdict

from controller.config.profile import Profile
from controller.doctor.gpu_checks import (
    check_gpu,
    check_gpu_container,
    check_gpu_memory,
    check_nvidia,
    check_nvidia_runtime,
)
from controller.doctor.host_checks import (
    check_backup,
    check_compose,
    check_disk,
    check_engine,
    check_image,
    check_port,
    check_settings,
    check_tls,
    offline_checks,
)
from controller.doctor.records import FAIL, OK, WARN, Check, Facts


def diagnose(profile: Profile, facts: Facts, *, catalog_profiles: list[Profile], offline: bool = False) -> list[Check]:
    """Every check for `profile` on the machine the facts describe, in the order an operator fixes them."""
    cpu_profiles = [p.name for p in catalog_profiles if p.accelerator == "cpu"]
    checks = [check_nvidia(profile, facts.nvidia, cpu_profiles)]
    if profile.accelerator == "gpu" and facts.nvidia.gpus:
        checks += [check_gpu(profile, gpu) for gpu in facts.nvidia.gpus]
        checks.append(check_gpu_memory(profile, facts.nvidia.gpus, facts.env.gpu_memory_gib, catalog_profiles))
    checks.append(check_engine(facts.docker))
    if profile.accelerator == "gpu" and facts.docker.engine_version:
        checks.append(check_nvidia_runtime(facts.docker))
        if facts.gpu_container is not None:
            checks.append(check_gpu_container(facts.gpu_container))
    checks.append(check_compose(facts.docker))
    checks += [check_image(image) for image in facts.images]
    if facts.disk is not None:
        checks.append(check_disk(profile, facts.disk))
    if facts.port is not None:
        checks.append(check_port(facts.port))
    checks += check_settings(profile, facts.env)
    if not facts.env.settings_error:
        checks.append(check_tls(facts.env))
        checks += [Check(f"sign-in: {name}", OK if probe.ok else FAIL, probe.finding, probe.fix)
                   for name, probe in facts.env.sign_in]  # fmt: skip
    checks += offline_checks(profile, facts, offline=offline)
    if facts.backup is not None:
        checks.append(check_backup(facts.backup))
    return checks


def failed(checks: list[Check]) -> bool:
    return any(c.status == FAIL for c in checks)


def as_dict(profile: Profile, checks: list[Check], model_source: str) -> dict:
    counts = {status: sum(c.status == status for c in checks) for status in (OK, WARN, FAIL)}
    return {
        "model": profile.name,
        "accelerator": profile.accelerator,
        "model_source": model_source,
        "ok": not failed(checks),
        "counts": counts,
        "checks": [asdict(c) for c in checks],
    }
