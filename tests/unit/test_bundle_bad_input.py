"""`bundle load` of a bundle that is bad input: a catalog that `--catalog` would refuse, links and unsafe
names in a directory or tar bundle, a model id no catalog accepts, a manifest built to crash the parser.
Each is exit 2 with a message naming the member, profile or field, and .env, the HF cache and the
catalog are left byte-identical."""

from __future__ import annotations

import os
import tarfile

import pytest
import yaml

from controller.bundle.format import CATALOG_MEMBER, MANIFEST_NAME, model_member
from tests.unit._support import CPU_PROFILE
from tests.unit.bundle_support import (
    MODEL,
    REVISION,
    assert_load_refused,
    edit_manifest,
    synthetic_bundle,
    write_bundle,
)


def _catalog(**fields) -> bytes:
    return yaml.safe_dump({"profiles": {"tiny-hf": {**CPU_PROFILE, "model": MODEL, **fields}}}).encode()


# ----- the bundle's catalog, checked as --catalog checks it ----------------------------------------------


@pytest.mark.parametrize(
    ("catalog", "expected"),
    [
        (b"profiles: [unclosed\n", "not valid YAML"),
        (b"profiles: !!python/object/apply:os.system ['true']\n", "line 1"),
        (b"profiles:\n  tiny-hf: {model: x\xff}\n", "not valid UTF-8"),
        (_catalog(max_model_len=-5), "profile 'tiny-hf': field 'max_model_len'"),
        (_catalog(no_such_field=1), "profile 'tiny-hf': field 'no_such_field'"),
        (b"profiles: {}\n", "profile 'tiny-hf'"),  # the bundle's own profile is missing from its catalog
        (_catalog(model="other-org/other-model"), "other-org/other-model"),  # serves another model
    ],
    ids=["not-yaml", "python-tag", "not-utf8", "invalid-field", "unknown-field", "profile-missing", "other-model"],
)
def test_a_bundle_catalog_that_catalog_would_refuse_is_refused_before_anything_is_written(
    tmp_path, bundle_site, catalog, expected
):
    bundle = write_bundle(tmp_path / "b", directory=True, images=False, catalog=catalog)
    assert_load_refused(bundle_site, bundle, f"member {CATALOG_MEMBER}", expected)


# ----- links and unsafe names: a bundle holds regular files only -----------------------------------------


def test_a_symlink_in_a_directory_bundle_is_refused_naming_it(tmp_path, bundle_site):
    bundle = synthetic_bundle(tmp_path, directory=True, images=False)
    name = model_member(MODEL, REVISION, "config.json")
    outside = tmp_path / "outside.json"
    outside.write_bytes((bundle / name).read_bytes())  # same bytes: the checksum alone cannot tell
    (bundle / name).unlink()
    (bundle / name).symlink_to(outside)
    assert_load_refused(bundle_site, bundle, name, "symbolic link")


def test_a_symlinked_directory_and_manifest_in_a_directory_bundle_are_refused(tmp_path, bundle_site):
    bundle = synthetic_bundle(tmp_path, directory=True, images=False)
    tokenizer = bundle / model_member(MODEL, REVISION, "tokenizer")
    os.rename(tokenizer, tmp_path / "elsewhere")
    tokenizer.symlink_to(tmp_path / "elsewhere")
    assert_load_refused(bundle_site, bundle, model_member(MODEL, REVISION, "tokenizer"), "symbolic link")
    tokenizer.unlink()
    os.rename(tmp_path / "elsewhere", tokenizer)
    os.rename(bundle / MANIFEST_NAME, tmp_path / "manifest.json")
    (bundle / MANIFEST_NAME).symlink_to(tmp_path / "manifest.json")
    assert_load_refused(bundle_site, bundle, MANIFEST_NAME, "symbolic link")


@pytest.mark.parametrize(
    ("kind", "name", "expected"),
    [
        (tarfile.SYMTYPE, "models/evil-link", "symbolic link"),
        (tarfile.LNKTYPE, "models/evil-hardlink", "hard link"),
        (tarfile.REGTYPE, "/etc/evil", "absolute path"),
        (tarfile.REGTYPE, "models/../../evil", "'..'"),
        (tarfile.FIFOTYPE, "models/evil-fifo", "not a regular file"),
    ],
    ids=["symlink", "hardlink", "absolute", "dotdot", "fifo"],
)
def test_links_and_unsafe_names_in_a_tar_bundle_are_refused_naming_the_member(
    tmp_path, bundle_site, kind, name, expected
):
    from tests.unit.bundle_support import append_tar_member

    bundle = synthetic_bundle(tmp_path, directory=False, images=False)
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = "/etc/passwd" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
    append_tar_member(bundle, info, b"x")
    assert_load_refused(bundle_site, bundle, name, expected)


# ----- model ids and manifests that crashed the parser ---------------------------------------------------


@pytest.mark.parametrize(
    "model",
    ["fake-org/tiny\x00llama", "../../etc", "/srv/models/tiny", "org/name/extra", "org--name", "x" * 300],
    ids=["nul", "dotdot", "local-path", "three-parts", "double-dash", "too-long"],
)
def test_a_model_id_the_catalog_would_refuse_is_refused(tmp_path, bundle_site, model):
    bundle = synthetic_bundle(tmp_path, directory=True, images=False)
    edit_manifest(bundle, lambda manifest: manifest["models"][0].update(model=model))
    assert_load_refused(bundle_site, bundle, MANIFEST_NAME, "field 'models.0.model'")


def test_a_deeply_nested_manifest_is_refused(tmp_path, bundle_site):
    bundle = synthetic_bundle(tmp_path, directory=True, images=False)
    (bundle / MANIFEST_NAME).write_text("[" * 200_000 + "]" * 200_000)
    assert_load_refused(bundle_site, bundle, MANIFEST_NAME, "nested")


def test_a_manifest_with_a_huge_number_is_refused(tmp_path, bundle_site):
    bundle = synthetic_bundle(tmp_path, directory=True, images=False)
    (bundle / MANIFEST_NAME).write_text('{"format_version": ' + "9" * 5000 + "}")
    assert_load_refused(bundle_site, bundle, MANIFEST_NAME, "not JSON")


def test_a_model_listed_twice_is_refused(tmp_path, bundle_site):
    bundle = synthetic_bundle(tmp_path, directory=True, images=False)

    def twice(manifest: dict) -> None:
        manifest["models"].append({**manifest["models"][0], "revision": "f" * 40})

    edit_manifest(bundle, twice)
    assert_load_refused(bundle_site, bundle, MANIFEST_NAME, f"model {MODEL} twice")


@pytest.mark.parametrize("path", ["x" * 256, "tokenizer/" + "y" * 300], ids=["file", "inside-a-directory"])
def test_a_snapshot_path_with_a_name_longer_than_a_file_system_holds_is_refused(tmp_path, bundle_site, path):
    # Found by tests/unit/test_bundle_properties.py: it was WriteFailed (exit 1) while committing, naming a blob.
    bundle = synthetic_bundle(tmp_path, directory=True, images=False)
    edit_manifest(bundle, lambda manifest: manifest["models"][0]["files"][0].update(path=path))
    member = model_member(MODEL, REVISION, "config.json")
    assert_load_refused(bundle_site, bundle, MANIFEST_NAME, f"member {member}", "characters long", "(255)")
