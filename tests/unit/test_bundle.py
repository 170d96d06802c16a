"""The bundle format and `bundle load` on small synthetic bundles (a fake image tar member is enough for
the verification-before-load logic): a truncated bundle, a flipped byte, a newer format version, and a
models-only load into a real HF cache layout that a second load leaves unchanged. No Docker needed."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from controller.bundle.format import FORMAT_VERSION, IMAGES_MEMBER, MANIFEST_NAME, model_member, verify_bundle
from controller.bundle.load import load_bundle
from controller.bundle.reader import open_bundle
from controller.config.site import SiteConfig
from controller.errors import InputError
from controller.operator_ui import OperatorUI
from controller.runtime import hf_cache
from tests.unit.bundle_support import BUNDLE_CATALOG, FILES, MODEL, REVISION, synthetic_bundle
from tests.unit.cli_support import collapse_whitespace, run_cli


def _unchanged(bundle_site: SiteConfig, env_before: str) -> None:
    assert bundle_site.env_file.read_text() == env_before
    assert not (bundle_site.root / "hf").exists() and not (bundle_site.root / "catalog.yaml").exists()


@pytest.mark.parametrize("directory", [False, True])
def test_a_written_bundle_verifies(tmp_path, directory):
    reader = open_bundle(synthetic_bundle(tmp_path, directory=directory))
    seen = []
    manifest = verify_bundle(reader, seen.append)
    reader.close()
    assert sum(seen) == manifest.total_bytes and len(manifest.members) == 5
    # Each snapshot file is carried with the name of its blob, so that load rebuilds the hub layout.
    assert {f.path: f.blob for f in manifest.models[0].files} == {
        path: hashlib.sha256(data).hexdigest() for path, data in FILES.items()
    }


def test_truncated_bundle_file_is_refused_naming_the_member_and_nothing_is_loaded(tmp_path, bundle_site):
    bundle = synthetic_bundle(tmp_path, directory=False)
    data = bundle.read_bytes()
    with tarfile.open(bundle) as tar:  # cut inside the images member's data
        images = tar.getmember(IMAGES_MEMBER)
    bundle.write_bytes(data[: images.offset_data + 100])
    before = bundle_site.env_file.read_text()
    result = run_cli(bundle_site.root, "bundle", "load", str(bundle), "--yes")
    assert result.returncode == 2, result.stderr
    message = collapse_whitespace(result.stderr)
    assert "no manifest.json" in message and "ends inside member images.tar" in message
    assert "Traceback" not in result.stderr
    _unchanged(bundle_site, before)


def test_truncated_member_is_named(tmp_path, bundle_site):
    bundle = synthetic_bundle(tmp_path, directory=True)
    member = bundle / model_member(MODEL, REVISION, "model.safetensors")
    member.write_bytes(member.read_bytes()[:1000])
    before = bundle_site.env_file.read_text()
    with pytest.raises(InputError, match=r"member models/fake-org--tiny-llama/.*/model\.safetensors is 1000 bytes"):
        load_bundle(bundle_site, bundle, ui=OperatorUI(confirm=lambda q: True))
    _unchanged(bundle_site, before)


@pytest.mark.parametrize("directory", [False, True])
def test_flipped_byte_in_one_member_is_refused_naming_it(tmp_path, bundle_site, directory):
    bundle = synthetic_bundle(tmp_path, directory=directory)
    name = model_member(MODEL, REVISION, "config.json")
    if directory:
        path, offset = bundle / name, 3
    else:
        with tarfile.open(bundle) as tar:
            path, offset = bundle, tar.getmember(name).offset_data + 3
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    before = bundle_site.env_file.read_text()
    result = run_cli(bundle_site.root, "bundle", "load", str(bundle), "--yes")
    assert result.returncode == 2
    assert f"member {name}: sha256" in collapse_whitespace(result.stderr) and "altered" in result.stderr
    _unchanged(bundle_site, before)


def test_newer_format_version_is_refused_before_its_fields_are_read(tmp_path, bundle_site):
    bundle = synthetic_bundle(tmp_path, directory=True, version=FORMAT_VERSION + 1)
    manifest = json.loads((bundle / MANIFEST_NAME).read_text())
    manifest["a_field_from_the_future"] = True
    (bundle / MANIFEST_NAME).write_text(json.dumps(manifest))
    before = bundle_site.env_file.read_text()
    result = run_cli(bundle_site.root, "bundle", "load", str(bundle), "--yes")
    assert result.returncode == 2
    newer = f"format version {FORMAT_VERSION + 1} is newer than this controller reads ({FORMAT_VERSION})"
    assert newer in collapse_whitespace(result.stderr)
    _unchanged(bundle_site, before)


def test_member_outside_the_manifest_and_unsafe_paths_are_refused(tmp_path, bundle_site):
    bundle = synthetic_bundle(tmp_path, directory=True)
    (bundle / "extra.bin").write_bytes(b"x")
    with pytest.raises(InputError, match="member extra.bin is not in the manifest"):
        load_bundle(bundle_site, bundle, ui=OperatorUI(confirm=lambda q: True))
    (bundle / "extra.bin").unlink()
    manifest = json.loads((bundle / MANIFEST_NAME).read_text())
    manifest["members"][0]["path"] = "../../etc/passwd"
    (bundle / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="field 'members.0.path'"):
        load_bundle(bundle_site, bundle, ui=OperatorUI(confirm=lambda q: True))


def test_unconfirmed_load_changes_nothing(tmp_path, bundle_site):
    bundle = synthetic_bundle(tmp_path, directory=False, images=False)
    before = bundle_site.env_file.read_text()
    result = run_cli(bundle_site.root, "bundle", "load", str(bundle))  # stdin is not a terminal and no --yes
    assert result.returncode == 2 and "--yes" in result.stderr
    _unchanged(bundle_site, before)


def test_models_load_into_the_hub_layout_and_a_second_load_changes_nothing(tmp_path, bundle_site):
    bundle = synthetic_bundle(tmp_path, directory=False, images=False)
    first = run_cli(bundle_site.root, "--debug", "bundle", "load", str(bundle), "--yes", "--json")
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert result["changed"] and result["model_files_written"] == 3
    assert any("sha256 match" in line for line in result["verified"])
    snapshot = hf_cache.find_snapshot(bundle_site.root / "hf", MODEL)
    assert snapshot is not None and snapshot.revision == REVISION
    assert {f.path: f.source.read_bytes() for f in snapshot.files} == FILES
    assert all(f.blob for f in snapshot.files)  # links into blobs/, as huggingface_hub lays them out
    env = bundle_site.env_file.read_text()
    assert "OFFLINE='true'" in env and f"CONTROLLER_CATALOG='{bundle_site.root / 'catalog.yaml'}'" in env
    assert (bundle_site.root / "catalog.yaml").read_bytes() == BUNDLE_CATALOG
    stamp = {p: p.lstat().st_mtime_ns for p in (bundle_site.root / "hf").rglob("*")}

    second = run_cli(bundle_site.root, "bundle", "load", str(bundle), "--json")  # no --yes: nothing to ask
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)
    assert not again["changed"] and again["env_written"] == [] and again["already_present"]["model_files"] == 3
    assert bundle_site.env_file.read_text() == env
    assert {p: p.lstat().st_mtime_ns for p in (bundle_site.root / "hf").rglob("*")} == stamp


def test_a_different_catalog_next_to_env_is_not_overwritten(tmp_path, bundle_site):
    bundle = synthetic_bundle(tmp_path, directory=True, images=False)
    (bundle_site.root / "catalog.yaml").write_text("profiles: {mine: {}}\n")
    before = bundle_site.env_file.read_text()
    with pytest.raises(InputError, match="catalog.yaml exists and differs"):
        load_bundle(bundle_site, bundle, ui=OperatorUI(confirm=lambda q: True))
    assert bundle_site.env_file.read_text() == before and not (bundle_site.root / "hf").exists()


def test_too_little_disk_is_refused_before_anything_is_loaded(tmp_path, bundle_site, monkeypatch):
    import shutil
    from collections import namedtuple

    bundle = synthetic_bundle(tmp_path, directory=True, images=False)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    before = bundle_site.env_file.read_text()
    with pytest.raises(InputError, match=r"has 1.0 kB free; loading models in .* needs about"):
        load_bundle(bundle_site, bundle, ui=OperatorUI(confirm=lambda q: True))
    _unchanged(bundle_site, before)


def _create_site(tmp_path: Path, model: str) -> Path:
    from tests.unit._support import CPU_PROFILE, write_catalog

    project = tmp_path / "connected"
    project.mkdir()
    (project / ".env").write_text(f"HF_CACHE_DIR={project / 'hf'}\n")
    (project / "models" / "tiny").mkdir(parents=True)
    return write_catalog(project / "catalog.yaml", {"tiny-hf": {**CPU_PROFILE, "model": model}})


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("./models/tiny", "profile 'tiny-hf' serves the local directory"),
        (MODEL, f"model {MODEL} (profile 'tiny-hf') is not in the Hugging Face cache"),
    ],
)
def test_create_refuses_what_it_cannot_carry_before_writing_anything(tmp_path, model, message):
    catalog = _create_site(tmp_path, model)
    out = tmp_path / "out.bundle"
    result = run_cli(catalog.parent, "--catalog", str(catalog), "bundle", "create", "tiny-hf", "-o", str(out))
    assert result.returncode == 2, result.stderr
    assert message in collapse_whitespace(result.stderr)
    assert not out.exists() and not out.with_name("out.bundle.partial").exists()


def test_create_refuses_an_existing_output(tmp_path):
    catalog = _create_site(tmp_path, MODEL)
    out = tmp_path / "out.bundle"
    out.write_text("keep me")
    result = run_cli(catalog.parent, "--catalog", str(catalog), "bundle", "create", "tiny-hf", "-o", str(out))
    assert result.returncode == 2 and "already exists" in result.stderr
    assert out.read_text() == "keep me"


def _quoted_site(tmp_path: Path, name: str) -> SiteConfig:
    project = tmp_path / name
    project.mkdir()
    (project / ".env").write_text(f"HF_CACHE_DIR={tmp_path / 'hf'}\n")
    return SiteConfig(root=project, env_file=project / ".env")


def test_a_project_directory_with_a_quote_in_its_path_loads_and_reads_back_literally(tmp_path, monkeypatch):
    monkeypatch.delenv("OFFLINE", raising=False)
    monkeypatch.delenv("HF_CACHE_DIR", raising=False)
    site = _quoted_site(tmp_path, "it's")
    bundle = synthetic_bundle(tmp_path, directory=True, images=False)
    result = load_bundle(site, bundle, ui=OperatorUI(confirm=lambda q: True))
    assert result["env_written"] == ["CONTROLLER_CATALOG", "OFFLINE"]
    from controller.config.envfile import read_env_file

    assert read_env_file(site.env_file)["CONTROLLER_CATALOG"] == str(site.root / "catalog.yaml")


def test_a_project_path_that_cannot_be_stored_in_env_is_refused_before_anything_is_loaded(tmp_path, monkeypatch):
    from controller.errors import SettingsError

    monkeypatch.delenv("OFFLINE", raising=False)
    monkeypatch.delenv("HF_CACHE_DIR", raising=False)
    site = _quoted_site(tmp_path, 'it\'s-a-"site"')
    bundle = synthetic_bundle(tmp_path, directory=True, images=False)
    before = site.env_file.read_text()
    with pytest.raises(SettingsError, match="CONTROLLER_CATALOG"):
        load_bundle(site, bundle, ui=OperatorUI(confirm=lambda q: True))
    assert site.env_file.read_text() == before
    assert not (tmp_path / "hf").exists() and not (site.root / "catalog.yaml").exists()
