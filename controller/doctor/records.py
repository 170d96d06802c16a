"""What `controller doctor`'s checks read and return: the facts of this machine (gathered by
controller.doctor.facts; recorded ones in the unit tests) and a Check with its status.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from controller.runtime.gpu import Gpu

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok, warn or fail
    finding: str
    fix: str | None = None
    details: dict = field(default_factory=dict)


# ----- facts ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NvidiaFacts:
    smi_path: str | None  # None: nvidia-smi is not installed
    gpus: list[Gpu] = field(default_factory=list)
    driver_version: str | None = None
    cuda_version: str | None = None
    error: str | None = None  # nvidia-smi is there but failed (no driver loaded)


@dataclass(frozen=True)
class DockerFacts:
    engine_version: str | None = None
    engine_error: str | None = None
    nvidia_runtime: bool = False
    compose_version: str | None = None
    compose_error: str | None = None


@dataclass(frozen=True)
class ImageFacts:
    role: str  # "vLLM" or "Open WebUI"
    setting: str  # the .env key that names it
    image: str
    present: bool
    pullable: bool | None = None  # None: not asked (present)
    error: str | None = None


@dataclass(frozen=True)
class PortFacts:
    port: int
    address: str
    ours: list[str] = field(default_factory=list)  # containers of this stack publishing it
    foreign: list[str] = field(default_factory=list)  # other containers publishing it
    program: bool = False  # a program outside Docker listens on it


@dataclass(frozen=True)
class DiskFacts:
    cache_dir: Path
    checked_at: Path  # the cache or its nearest existing parent
    free_bytes: int
    model_cached: bool  # the HF id's snapshot is in the cache
    local_model_found: bool = False  # a profile serving a local directory: that it exists


@dataclass(frozen=True)
class EnvFacts:
    path: Path
    exists: bool
    mode: int | None = None
    missing_secrets: list[str] = field(default_factory=list)
    hf_token_set: bool = False
    gpu_memory_gib: float | None = None
    offline: bool = False  # OFFLINE=true in the settings
    settings_error: str | None = None
    settings_hint: str | None = None
    tls_mode: str = "off"  # TLS in the settings
    tls_host: str | None = None
    tls_days_left: int | None = None  # TLS=files: the site's certificate
    # LDAP=on / OIDC=on: (check name, controller.runtime.directory_probe.ProbeResult), probed from here.
    sign_in: tuple = ()


@dataclass(frozen=True)
class ContainerGpuFacts:
    """The one-shot `--gpus` container: run only when the engine has an NVIDIA runtime and the image is here."""

    image: str
    ran: bool
    output: str = ""
    error: str | None = None


@dataclass(frozen=True)
class BackupFacts:
    folder: str
    newest: str | None = None
    age_s: float | None = None


@dataclass(frozen=True)
class Facts:
    nvidia: NvidiaFacts
    docker: DockerFacts
    env: EnvFacts
    images: list[ImageFacts] = field(default_factory=list)  # empty when the settings are invalid
    port: PortFacts | None = None
    disk: DiskFacts | None = None
    gpu_container: ContainerGpuFacts | None = None
    backup: BackupFacts | None = None


# ----- version strings in the facts -----------------------------------------------------------


def parse_version(text: str | None) -> tuple[int, ...]:
    """'20.10.24+dfsg1' -> (20, 10, 24); 'v2.40.3' -> (2, 40, 3); () when there is no version."""
    match = re.match(r"v?(\d+(?:\.\d+)*)", (text or "").strip())
    return tuple(int(n) for n in match.group(1).split(".")) if match else ()


def dotted(version: tuple[int, ...]) -> str:
    return ".".join(str(n) for n in version)
