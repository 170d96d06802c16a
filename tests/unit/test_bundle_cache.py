"""`bundle load` into the Hugging Face cache: stage, check, then commit. Every destination is checked
before anything is written (a file where the bundle needs a directory, two snapshot paths `d` and `d/f`),
a blob's name must be its content's hash, an existing cached file is never overwritten with other
content, and a failure while committing puts the cache, .env and the catalog back byte for byte."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from controller.bundle.load import load_bundle
from controller.config.site import SiteConfig
from controller.errors import WriteFailed
from controller.operator_ui import OperatorUI
from controller.runtime import hf_cache
from tests.unit._support import make_hub_cache
from tests.unit.bundle_support import (
    FILES,
    MODEL,
    REVISION,
    assert_load_refused,
    sha256_hex,
    synthetic_bundle,
    tree_state,
    write_bundle,
)

OLD_REVISION = "f" * 40
OLD_FILES = {"config.json": b'{"model_type": "old"}', "model.safetensors": b"old weights"}
YES = OperatorUI(confirm=lambda question: True)


def _cache(site: SiteConfig) -> Path:
    return site.root / "hf"


def _git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


# ----- every destination checked before anything is written ----------------------------------------------


@pytest.mark.parametrize("blobs", [None, {"d": None, "d/f": None}], ids=["blobs", "plain-files"])
def test_a_file_and_a_directory_of_the_same_name_are_refused_before_writing(tmp_path, bundle_site, blobs):
    files = {"config.json": b"{}", "d/f": b"inside", "d": b"a file named like the directory"}
    bundle = write_bundle(tmp_path / "b.tar", directory=False, images=False, files=files, blobs=blobs)
    assert_load_refused(bundle_site, bundle, "'d'", "directory")


def test_a_directory_where_the_bundle_puts_a_file_is_refused_before_writing(tmp_path, bundle_site):
    make_hub_cache(_cache(bundle_site), MODEL, OLD_REVISION, OLD_FILES)
    repo = hf_cache.repo_dir(_cache(bundle_site), MODEL)
    (repo / "snapshots" / REVISION / "config.json").mkdir(parents=True)
    bundle = synthetic_bundle(tmp_path, directory=True, images=False)
    assert_load_refused(bundle_site, bundle, f"snapshots/{REVISION}/config.json")


def test_a_file_where_the_bundle_needs_a_directory_is_refused_before_writing(tmp_path, bundle_site):
    make_hub_cache(_cache(bundle_site), MODEL, OLD_REVISION, OLD_FILES)
    repo = hf_cache.repo_dir(_cache(bundle_site), MODEL)
    (repo / "snapshots" / REVISION).write_bytes(b"a file where the snapshot directory goes")
    bundle = synthetic_bundle(tmp_path, directory=True, images=False)
    assert_load_refused(bundle_site, bundle, f"snapshots/{REVISION}", "not a directory")


@pytest.mark.parametrize("failing", ["env", "link"])
def test_a_failure_while_committing_leaves_cache_env_and_catalog_byte_identical(
    tmp_path, bundle_site, monkeypatch, failing
):
    make_hub_cache(_cache(bundle_site), MODEL, OLD_REVISION, OLD_FILES)
    bundle = synthetic_bundle(tmp_path, directory=True, images=False)
    before = tree_state(bundle_site.root)
    if failing == "env":
        import controller.config.envfile as envfile

        def refuse(*args, **kwargs):
            raise WriteFailed("cannot write .env: disk full (simulated)")

        monkeypatch.setattr(envfile, "write_env_values", refuse)
    else:
        import os

        calls = []

        def symlink(*args, **kwargs):
            calls.append(args)
            if len(calls) == 2:
                raise OSError(28, "No space left on device (simulated)")
            return real(*args, **kwargs)

        real = os.symlink
        monkeypatch.setattr(os, "symlink", symlink)
    with pytest.raises((WriteFailed, OSError)):
        load_bundle(bundle_site, bundle, ui=YES)
    assert tree_state(bundle_site.root) == before


# ----- cache integrity: blob names are content hashes; nothing cached is overwritten ------------------


def test_a_blob_named_with_the_hash_of_other_content_is_refused(tmp_path, bundle_site):
    make_hub_cache(_cache(bundle_site), MODEL, OLD_REVISION, OLD_FILES)
    old_blob = sha256_hex(OLD_FILES["model.safetensors"])
    bundle = write_bundle(tmp_path / "b", directory=True, images=False, blobs={"model.safetensors": old_blob})
    assert_load_refused(bundle_site, bundle, old_blob[:16], "model.safetensors")
    assert (hf_cache.repo_dir(_cache(bundle_site), MODEL) / "blobs" / old_blob).read_bytes() == b"old weights"


def test_a_blob_named_by_a_wrong_git_sha1_is_refused(tmp_path, bundle_site):
    bundle = write_bundle(tmp_path / "b", directory=True, images=False, blobs={"config.json": "0" * 40})
    assert_load_refused(bundle_site, bundle, "0" * 16, "config.json")


def test_a_blob_named_by_its_git_sha1_loads(tmp_path, bundle_site):
    blob = _git_sha1(FILES["config.json"])
    bundle = write_bundle(tmp_path / "b", directory=True, images=False, blobs={"config.json": blob})
    load_bundle(bundle_site, bundle, ui=YES)
    repo = hf_cache.repo_dir(_cache(bundle_site), MODEL)
    assert (repo / "blobs" / blob).read_bytes() == FILES["config.json"]
    assert (repo / "snapshots" / REVISION / "config.json").read_bytes() == FILES["config.json"]


@pytest.mark.parametrize("blobs", [None, {"config.json": None}], ids=["blob", "plain-file"])
def test_an_existing_cached_file_with_other_content_is_not_overwritten(tmp_path, bundle_site, blobs):
    repo = hf_cache.repo_dir(_cache(bundle_site), MODEL)
    existing = repo / "blobs" / sha256_hex(FILES["config.json"]) if blobs is None else None
    existing = existing or repo / "snapshots" / REVISION / "config.json"
    existing.parent.mkdir(parents=True)
    existing.write_bytes(b"cached bytes of something else")
    bundle = write_bundle(tmp_path / "b", directory=True, images=False, blobs=blobs)
    assert_load_refused(bundle_site, bundle, str(existing))
    assert existing.read_bytes() == b"cached bytes of something else"


def test_a_load_beside_another_revision_keeps_that_revision(tmp_path, bundle_site):
    make_hub_cache(_cache(bundle_site), MODEL, OLD_REVISION, OLD_FILES)
    repo = hf_cache.repo_dir(_cache(bundle_site), MODEL)
    old = {p: p.read_bytes() for p in (repo / "blobs").iterdir()}
    load_bundle(bundle_site, synthetic_bundle(tmp_path, directory=False, images=False), ui=YES)
    assert {p: p.read_bytes() for p in old} == old
    assert hf_cache.revision(_cache(bundle_site), MODEL) == REVISION
    snapshot = hf_cache.find_snapshot(_cache(bundle_site), MODEL)
    assert snapshot is not None and {f.path: f.source.read_bytes() for f in snapshot.files} == FILES
    assert not [p for p in _cache(bundle_site).rglob("*") if p.name.startswith(".")]  # no staging left behind
