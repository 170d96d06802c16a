"""Helpers for the bundle tests: small bundles written by the real writer (a fake image tar member is
enough for the verification-before-load logic), edits of a written bundle, and a picture of a directory
tree to compare byte for byte."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import yaml

from controller.bundle.format import (
    CATALOG_MEMBER,
    FORMAT_VERSION,
    IMAGES_MEMBER,
    MANIFEST_NAME,
    ImageEntry,
    Manifest,
    ModelEntry,
    ModelFile,
    model_member,
)
from controller.bundle.writer import writer_for
from controller.config.site import SiteConfig
from tests.unit._support import CPU_PROFILE
from tests.unit.cli_support import collapse_whitespace, run_cli

MODEL = "fake-org/tiny-llama"
REVISION = "0123456789abcdef0123456789abcdef01234567"
FILES = {"config.json": b'{"model_type": "llama"}', "model.safetensors": bytes(range(256)) * 64,
         "tokenizer/tokenizer.json": b"{}"}  # fmt: skip
FAKE_ID = "sha256:" + "ab" * 32
# The catalog a bundle of the tiny-hf profile carries: that profile, serving MODEL.
BUNDLE_CATALOG = yaml.safe_dump({"profiles": {"tiny-hf": {**CPU_PROFILE, "model": MODEL}}}).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_bundle(out: Path, *, directory: bool, files: dict[str, bytes] = FILES,
                 blobs: dict[str, str | None] | None = None, model: str = MODEL, revision: str = REVISION,
                 catalog: bytes | None = BUNDLE_CATALOG, images: bool = True, version: int = FORMAT_VERSION,
                 profiles: tuple[str, ...] = ("tiny-hf",)) -> Path:  # fmt: skip
    """A bundle at `out` of one model's `files` (snapshot path -> content), each carried as a blob named
    by its sha256 unless `blobs` names it otherwise (None: a plain file in the snapshot)."""
    source = out.with_name(out.name + ".src")
    source.mkdir()
    (source / "images.tar").write_bytes(b"not really a docker save, but verification reads only bytes" * 100)
    with writer_for(out, directory=directory) as writer:
        members = [writer.add(IMAGES_MEMBER, source / "images.tar")] if images else []
        entries = []
        for index, (path, data) in enumerate(files.items()):
            (source / f"file{index}").write_bytes(data)
            member = model_member(model, revision, path)
            members.append(writer.add(member, source / f"file{index}"))
            blob = (blobs or {}).get(path, sha256_hex(data))
            entries.append(ModelFile.model_construct(path=path, member=member, blob=blob))
        if catalog is not None:
            (source / "catalog.yaml").write_bytes(catalog)
            members.append(writer.add(CATALOG_MEMBER, source / "catalog.yaml"))
        manifest = Manifest.model_construct(
            format_version=version, controller_version="0.1.0", created="2026-11-26T00:00:00+00:00",
            profiles=list(profiles), images=[ImageEntry(reference="example/vllm:1", id=FAKE_ID)] if images else [],
            models=[ModelEntry.model_construct(model=model, revision=revision, profiles=list(profiles), files=entries)],
            catalog=CATALOG_MEMBER if catalog is not None else None, members=members,
        )  # fmt: skip
        writer.finish(manifest)
    return out


def synthetic_bundle(tmp_path: Path, *, directory: bool, images: bool = True, version: int = FORMAT_VERSION) -> Path:
    """A bundle of FILES of MODEL at REVISION, with a fake image tar and BUNDLE_CATALOG."""
    return write_bundle(tmp_path / ("bundle-dir" if directory else "bundle.tar"), directory=directory, images=images,
                        version=version)  # fmt: skip


def edit_manifest(bundle_dir: Path, change: Callable[[dict], object]) -> None:
    """Change a directory bundle's manifest.json in place (as JSON data)."""
    manifest = json.loads((bundle_dir / MANIFEST_NAME).read_text())
    change(manifest)
    (bundle_dir / MANIFEST_NAME).write_text(json.dumps(manifest))


def append_tar_member(bundle: Path, info: tarfile.TarInfo, data: bytes = b"") -> None:
    """Add one member (a link, an odd name) to the end of a tar bundle."""
    import io

    with tarfile.open(bundle, "a:", format=tarfile.PAX_FORMAT) as tar:
        info.size = len(data) if info.isfile() else 0
        tar.addfile(info, io.BytesIO(data) if info.isfile() else None)


def tree_state(root: Path, skip: str = ".controller") -> dict[str, tuple]:
    """Every path under root with its kind and content (a link's target): equal means byte-identical.
    `skip` (the controller's state directory: the lock of `bundle load`) is left out."""
    if not root.exists():
        return {}
    state: dict[str, tuple] = {}
    for path in sorted(root.rglob("*")):
        name = path.relative_to(root).as_posix()
        if name.split("/")[0] == skip:
            continue
        if path.is_symlink():
            state[name] = ("link", os.readlink(path))
        elif path.is_dir():
            state[name] = ("dir",)
        else:
            state[name] = ("file", path.read_bytes(), path.stat().st_mode)
    return state


def assert_load_refused(site: SiteConfig, bundle: Path, *expected: str) -> str:
    """Load `bundle` through the CLI; it must be exit 2 naming `expected`, and change nothing."""
    before = tree_state(site.root)
    result = run_cli(site.root, "bundle", "load", str(bundle), "--yes")
    message = collapse_whitespace(result.stderr)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in message
    for text in expected:
        assert text in message, message
    assert tree_state(site.root) == before
    return message
