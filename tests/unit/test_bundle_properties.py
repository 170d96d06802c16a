"""Properties of `bundle load`, run in-process through load_bundle: whatever member a tar bundle gains
and whatever a manifest says of its models (ids, revisions, file names, member names, blobs), the load
either succeeds or is refused with an InputError, and a refusal changes nothing, in the site or beside
it; a load that succeeds writes only the HF cache, the catalog and .env, and what the hub cache layout
gives back (controller.runtime.hf_cache) is the bundle's content, byte for byte.

Examples: EXAMPLES per property; each builds its own small bundle and site in a temporary directory.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, Phase, assume, example, given, settings
from hypothesis import strategies as st

from controller.bundle.format import MANIFEST_NAME
from controller.bundle.load import LOADED_CATALOG_NAME, load_bundle
from controller.config.env_values import merged_values
from controller.config.settings import read_settings
from controller.config.site import SiteConfig
from controller.errors import InputError
from controller.operator_ui import OperatorUI
from controller.runtime import hf_cache
from tests.unit._support import CPU_PROFILE
from tests.unit.bundle_support import (
    FILES,
    MODEL,
    append_tar_member,
    edit_manifest,
    sha256_hex,
    synthetic_bundle,
    tree_state,
    write_bundle,
)

EXAMPLES = 50
DERANDOMIZE = os.environ.get("CI") == "true"
PHASES = [Phase.explicit, Phase.generate] if os.environ.get("NOSHRINK") else list(Phase)
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=DERANDOMIZE, phases=PHASES,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
YES = OperatorUI(confirm=lambda question: True)
SITE = "site"

# Names a tar member or a manifest field could carry to escape the cache, collide with what is there,
# or break a reader: traversal, absolute paths, NUL, control characters, unicode, names too long for a
# file system, names of what the loader itself writes.
HOSTILE = [
    "", ".", "..", "/", "//", "../x", "a/../../b", "a/./b", "a//b", "a/", "/etc/passwd", "./x", "~/x", "\\x",
    "..\\x", "C:\\x", "a\x00b", "\x00", "a\nb", "a\rb", " ", "é", "模型", "\U0001f600", "a" * 255, "a" * 256,
    "x" * 300, "a/" * 600, "d/" + "x" * 1100, "manifest.json", "catalog.yaml", "images.tar", ".env", "models",
    "models/", "config.json", "config.json/x", "tokenizer", "tokenizer/tokenizer.json", "refs/main", "blobs",
    "snapshots", "hub", "main", "0" * 40, "f" * 64, "org/name", "org--name", "fake-org/tiny-llama", "-x", "_",
]  # fmt: skip
ODD = st.sampled_from(["/", ".", "\x00", "a", "é", "模", "\U0001f600", "-", " ", "\\", "\n", "_", "0"])
SEGMENT_START = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_"
SEGMENT_REST = SEGMENT_START + ".+=-"


def _segments(longest: int) -> st.SearchStrategy[str]:
    rest = st.one_of(st.text(SEGMENT_REST, max_size=12), st.text(SEGMENT_REST, min_size=240, max_size=longest - 1))
    return st.builds(lambda first, rest: first + rest, st.sampled_from(SEGMENT_START), rest)


# Paths the manifest accepts; a part may be longer than a file name can be (NAME_MAX 255).
VALID_PATH = st.lists(_segments(300), min_size=1, max_size=4).map("/".join)
# Paths a snapshot can hold, short enough for a member name (1024) with the longest model id and revision.
SNAPSHOT_PATH = st.lists(_segments(255), min_size=1, max_size=3).map("/".join)
ARBITRARY = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(ODD, max_size=40),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=40),
    VALID_PATH,
    st.lists(st.sampled_from(HOSTILE[:20]), min_size=1, max_size=4).map("/".join),
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    for key in ("OFFLINE", "HF_CACHE_DIR", "CONTROLLER_CATALOG"):
        monkeypatch.delenv(key, raising=False)


def _site(base: Path) -> SiteConfig:
    """A site in base/site whose .env names only its HF cache (base/site/hf, absent), as bundle_site;
    and base/outside, a directory beside it the load must never touch."""
    root = base / SITE
    root.mkdir()
    (root / ".env").write_text(f"HF_CACHE_DIR={root / 'hf'}\n")
    outside = base / "outside"
    (outside / "nested").mkdir(parents=True)
    (outside / "keep.txt").write_bytes(b"outside the site")
    (outside / "nested" / "keep.bin").write_bytes(bytes(range(256)))
    return SiteConfig(root=root, env_file=root / ".env")


def _load(site: SiteConfig, bundle: Path) -> dict | InputError:
    """load_bundle's result, or the InputError it refused with; any other exception is a failure."""
    try:
        return load_bundle(site, bundle, ui=YES, lock_timeout_s=5)
    except InputError as exc:
        return exc


def _outside_site(state: dict[str, tuple]) -> dict[str, tuple]:
    return {name: value for name, value in state.items() if name != SITE and not name.startswith(f"{SITE}/")}


def _changed(before: dict[str, tuple], after: dict[str, tuple]) -> set[str]:
    return {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}


def _assert_only_the_cache_catalog_and_env_changed(base: Path, before: dict[str, tuple]) -> None:
    after = tree_state(base)
    assert _outside_site(after) == _outside_site(before)  # the sibling directory and the bundle itself
    allowed = (
        f"{SITE}/hf",
        f"{SITE}/{LOADED_CATALOG_NAME}",
        f"{SITE}/.env",
        f"{SITE}/.controller",
    )  # .controller: the lock
    stray = {
        name for name in _changed(before, after) if not any(name == a or name.startswith(a + "/") for a in allowed)
    }
    assert not stray, stray
    assert not [name for name in after if name.startswith(f"{SITE}/") and "/.bundle-load-" in "/" + name]


def _pack(directory: Path, out: Path, rename: dict[str, str] | None = None) -> Path:
    """A tar bundle of a directory bundle's files (manifest last), members renamed by `rename`."""
    rename = rename or {}
    files = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())
    files.sort(key=lambda name: name == MANIFEST_NAME)
    with tarfile.open(out, "w:", format=tarfile.PAX_FORMAT) as tar:
        for name in files:
            data = (directory / name).read_bytes()
            info = tarfile.TarInfo(rename.get(name, name))
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return out


# ----- refused or loaded, never a crash; a refusal touches nothing --------------------------------------

KINDS = st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE])


@PROPERTY
@given(name=ARBITRARY, kind=KINDS, linkname=st.sampled_from(["/etc/passwd", "../../outside/keep.txt", "x"]))
def test_a_tar_bundle_with_any_added_member_loads_or_is_refused_touching_nothing(name, kind, linkname):
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        site = _site(base)
        bundle = synthetic_bundle(base, directory=False, images=False)
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, linkname
        try:
            append_tar_member(bundle, info, b"payload of the added member")
        except (ValueError, UnicodeError, tarfile.TarError):
            assume(False)  # tarfile cannot write that name: no bundle to load
        before = tree_state(base)
        result = _load(site, bundle)
        if isinstance(result, InputError):
            assert tree_state(base) == before, result
        else:
            # Only an added directory entry carries nothing; a file, a link or a pipe outside the
            # manifest is always refused.
            assert kind == tarfile.DIRTYPE, (name, kind, result)
            _assert_only_the_cache_catalog_and_env_changed(base, before)


FIELDS = {
    "model": ARBITRARY,
    "revision": ARBITRARY,
    "path0": st.one_of(VALID_PATH, ARBITRARY),
    "path1": st.one_of(VALID_PATH, ARBITRARY),
    "path2": st.one_of(VALID_PATH, ARBITRARY),
    "blob0": st.one_of(st.none(), ARBITRARY, st.just(sha256_hex(FILES["tokenizer/tokenizer.json"]))),
    "member0": st.one_of(
        VALID_PATH, ARBITRARY
    ),  # the first file's member, renamed in the manifest and in the tar file alike
}
# One field edited (so that a bad value is not hidden behind another one refused first), or several.
EDITS = st.one_of(
    st.sampled_from(sorted(FIELDS)).flatmap(lambda key: FIELDS[key].map(lambda value: {key: value})),
    st.fixed_dictionaries({}, optional=FIELDS),
)


def _apply(manifest: dict, edits: dict) -> None:
    model = manifest["models"][0]
    if "model" in edits:
        model["model"] = edits["model"]
    if "revision" in edits:
        model["revision"] = edits["revision"]
    for index, item in enumerate(model["files"]):
        if f"path{index}" in edits:
            item["path"] = edits[f"path{index}"]
    if "blob0" in edits:
        model["files"][0]["blob"] = edits["blob0"]
    if "member0" in edits:
        old = model["files"][0]["member"]
        model["files"][0]["member"] = edits["member0"]
        next(m for m in manifest["members"] if m["path"] == old)["path"] = edits["member0"]


@PROPERTY
@given(edits=EDITS, tar=st.booleans(), catalog=st.booleans())
@example(edits={"path0": "x" * 256}, tar=False, catalog=False)  # a file name longer than NAME_MAX
def test_a_bundle_with_any_model_id_revision_or_file_name_loads_or_is_refused_touching_nothing(edits, tar, catalog):
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        site = _site(base)
        carried = yaml.safe_dump({"profiles": {"tiny-hf": {**CPU_PROFILE, "model": MODEL}}}).encode()
        bundle = write_bundle(base / "bundle-dir", directory=True, images=False, catalog=carried if catalog else None)
        edit_manifest(bundle, lambda manifest: _apply(manifest, edits))
        edited = json.loads((bundle / MANIFEST_NAME).read_text())["models"][0]
        if tar:
            old = next(p for p in bundle.rglob("config.json")).relative_to(bundle).as_posix()
            renamed = {old: edits["member0"]} if "member0" in edits else {}
            try:
                bundle = _pack(bundle, base / "bundle.tar", renamed)
            except (ValueError, UnicodeError, tarfile.TarError):
                assume(False)
        elif "member0" in edits:
            assume(False)  # a directory bundle's member names are file names: the tar file carries any name
        before = tree_state(base)
        result = _load(site, bundle)
        if isinstance(result, InputError):
            assert tree_state(base) == before, result
            return
        _assert_only_the_cache_catalog_and_env_changed(base, before)
        # What was loaded reads back as the bundle's bytes, at the paths the (edited) manifest names.
        snapshot = hf_cache.repo_dir(site.root / "hf", edited["model"]) / "snapshots" / edited["revision"]
        for item, data in zip(edited["files"], FILES.values(), strict=True):
            assert (snapshot / item["path"]).read_bytes() == data


# ----- what loads reads back literally through the hub cache layout --------------------------------------


def _no_file_is_a_directory(paths: list[str]) -> bool:
    names = set(paths)
    return not any(p.rpartition("/")[0] and any(p.startswith(n + "/") for n in names) for p in paths)


def _git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


MODEL_IDS = st.sampled_from([MODEL, "Org_1/model.v2", "a/b", "meta-llama/Llama-3.2-1B-Instruct", "x" * 90 + "/y"])
REVISIONS = st.one_of(
    st.sampled_from(["0123456789abcdef0123456789abcdef01234567", "main", "v1.0", "r" * 128]),
    st.builds(lambda first, rest: first + rest, st.sampled_from(SEGMENT_START[:-1]),
              st.text(SEGMENT_START + ".-", max_size=30)),
)  # fmt: skip
SNAPSHOT_FILES = st.dictionaries(SNAPSHOT_PATH, st.binary(max_size=2048), max_size=5).filter(
    lambda files: _no_file_is_a_directory(["config.json", *files])
)


@PROPERTY
@given(model=MODEL_IDS, revision=REVISIONS, extra=SNAPSHOT_FILES, config=st.binary(max_size=256),
       naming=st.lists(st.sampled_from(["sha256", "git-sha1", "plain"]), min_size=6, max_size=6),
       directory=st.booleans())  # fmt: skip
def test_what_loads_reads_back_byte_identical_through_the_hub_cache_and_nothing_else_is_written(
    model, revision, extra, config, naming, directory
):
    files = {"config.json": config, **{k: v for k, v in extra.items() if k != "config.json"}}
    blobs = {}
    for (path, data), how in zip(files.items(), naming, strict=False):
        blobs[path] = sha256_hex(data) if how == "sha256" else _git_sha1(data) if how == "git-sha1" else None
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        site = _site(base)
        catalog = yaml.safe_dump({"profiles": {"tiny-hf": {**CPU_PROFILE, "model": model}}}).encode()
        bundle = write_bundle(base / ("bundle-dir" if directory else "bundle.tar"), directory=directory,
                              images=False, files=files, blobs=blobs, model=model, revision=revision,
                              catalog=catalog)  # fmt: skip
        before = tree_state(base)
        result = load_bundle(site, bundle, ui=YES)
        assert result["changed"]
        _assert_only_the_cache_catalog_and_env_changed(base, before)
        cache = site.root / "hf"
        assert hf_cache.revision(cache, model) == revision
        snapshot = hf_cache.find_snapshot(cache, model)
        assert snapshot is not None and snapshot.revision == revision
        assert {f.path: f.source.read_bytes() for f in snapshot.files} == files
        assert {f.path: f.blob for f in snapshot.files} == blobs
        assert (site.root / LOADED_CATALOG_NAME).read_bytes() == catalog
        loaded = read_settings(site).settings  # .env read back as the controller reads it
        assert loaded.hf_cache_path == cache and loaded.offline
        assert merged_values(site.env_file)["CONTROLLER_CATALOG"] == str(site.root / LOADED_CATALOG_NAME)
        # A second load of the same bundle changes nothing.
        again = tree_state(base)
        assert not load_bundle(site, bundle, ui=YES)["changed"]
        assert tree_state(base) == again
