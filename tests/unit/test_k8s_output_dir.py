"""`render --target k8s --out DIR` writes only into a directory of its own: one it created, or one
holding nothing but files it wrote there. Anything else (the operator's files, `/`, the home
directory, a system directory) is refused with exit 2 and nothing changes; and a failure at any
step of the write leaves `.env` and the directory byte-identical (no secret generated into `.env`
for a directory that was never written).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from controller.config.catalog import load_catalog
from controller.config.site import SiteConfig
from controller.deploy.k8s_settings import K8sSettings
from controller.errors import ControllerError, InputError
from controller.lifecycle.render_k8s import render_k8s
from controller.output_dir import MARKER
from tests.unit._support import DUMMY_SECRETS
from tests.unit.k8s_support import snapshot

MODEL = "deepseek-1.5b"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    for key in [*K8sSettings.model_fields, *(f.alias for f in K8sSettings.model_fields.values())]:
        monkeypatch.delenv(str(key), raising=False)
    for key in ("HF_TOKEN", "GPU_MEMORY_GIB", *DUMMY_SECRETS):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def site(tmp_path) -> SiteConfig:
    """A project whose .env has no secrets yet: a render would generate them."""
    root = tmp_path / "project"
    root.mkdir()
    (root / ".env").write_text("COMPOSE_PROJECT_NAME=llmstack\n", encoding="utf-8")
    return SiteConfig(root=root, env_file=root / ".env")


def _refused(site: SiteConfig, out: Path, *watched: Path) -> InputError:
    before = snapshot(site.root, *watched)
    with pytest.raises(InputError) as caught:
        render_k8s(site, load_catalog(), MODEL, out)
    assert caught.value.exit_code == 2
    assert snapshot(site.root, *watched) == before
    return caught.value


def test_a_directory_holding_the_operators_files_is_refused_and_left_as_it_was(site, tmp_path):
    out = tmp_path / "theirs"
    out.mkdir()
    for name in (".gitignore", "kustomization.yaml", "ingress.yaml"):
        (out / name).write_text(f"the operator's {name}\n", encoding="utf-8")
    error = _refused(site, out, tmp_path)
    assert str(out) in error.message and "kustomization.yaml" in error.message
    assert error.hint


def test_a_file_added_to_the_controllers_directory_makes_it_foreign(site, tmp_path):
    out = tmp_path / "k8s"
    render_k8s(site, load_catalog(), MODEL, out)
    (out / "notes.md").write_text("mine\n", encoding="utf-8")
    assert "notes.md" in _refused(site, out, tmp_path).message


def test_the_home_directory_is_refused_even_when_empty(site, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    assert "home" in _refused(site, home, tmp_path).message


def test_the_root_directory_is_refused(site, tmp_path):
    assert "/" in _refused(site, Path("/"), tmp_path).message


@pytest.mark.parametrize("out", ["/proc/999999999/k8s", "/etc/llmstack", "/sys/k8s"])
def test_a_system_directory_is_refused_before_any_secret_is_generated(site, out):
    _refused(site, Path(out))


def test_a_path_under_a_file_is_refused(site, tmp_path):
    (tmp_path / "a-file").write_text("x", encoding="utf-8")
    _refused(site, tmp_path / "a-file" / "k8s", tmp_path)


def test_the_directory_is_written_whole_and_a_stale_file_is_removed(site, tmp_path, monkeypatch):
    out = tmp_path / "deep" / "k8s"
    monkeypatch.setenv("K8S_INGRESS_HOST", "chat.example.com")
    render_k8s(site, load_catalog(), MODEL, out)
    assert (out / "ingress.yaml").exists()
    monkeypatch.delenv("K8S_INGRESS_HOST")
    result = render_k8s(site, load_catalog(), MODEL, out)
    assert "ingress.yaml" in result["changed"] and not (out / "ingress.yaml").exists()
    assert render_k8s(site, load_catalog(), MODEL, out)["changed"] == []
    assert sorted(p.name for p in tmp_path.joinpath("deep").iterdir()) == ["k8s"]  # no staging left


def test_a_directory_rendered_before_the_marker_existed_is_adopted_once(site, tmp_path):
    out = tmp_path / "k8s"
    render_k8s(site, load_catalog(), MODEL, out)
    (out / MARKER).unlink()  # as an older controller left it
    render_k8s(site, load_catalog(), MODEL, out)
    assert (out / MARKER).is_file()
    (out / MARKER).unlink()
    (out / "kustomization.yaml").write_text("resources: [mine.yaml]\n", encoding="utf-8")  # not ours any more
    assert "kustomization.yaml" in _refused(site, out, tmp_path).message


def test_cli_refuses_the_home_directory_with_exit_2(site, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("K8S_", "VLLM_", "WEBUI_", "CONTROLLER_"))}
    done = subprocess.run(
        [sys.executable, "-m", "controller", "--project-dir", str(site.root), "render", MODEL, "--target", "k8s",
         "--out", str(home)],
        env={**keep, "HOME": str(home)}, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "home directory" in " ".join(done.stderr.split()) and "Traceback" not in done.stderr
    assert list(home.iterdir()) == [] and site.env_file.read_text(encoding="utf-8") == BASE_ENV


_MUTATIONS = ("replace", "rename", "mkdir", "rmdir", "unlink")
BASE_ENV = "COMPOSE_PROJECT_NAME=llmstack\n"


def _fail_at(monkeypatch, step: int, spare: Path) -> list[str]:
    """Make the step-th file-system change (os.replace, rename, mkdir, ...) fail as a full disk
    would; the controller's lock and journal under `spare` are left alone, and so are calls relative
    to a directory descriptor (shutil.rmtree tidying up after the swap)."""
    calls: list[str] = []
    for name in _MUTATIONS:
        real = getattr(os, name)

        def failing(*args, _real=real, _name=name, **kwargs):
            if Path(args[0]).is_absolute() and not Path(args[0]).is_relative_to(spare):
                calls.append(f"{_name} {args[0]}")
                if len(calls) == step + 1:
                    raise OSError(errno.ENOSPC, "No space left on device")
            return _real(*args, **kwargs)

        monkeypatch.setattr(os, name, failing)
    return calls


def _baseline(site: SiteConfig, out: Path, existing: bool, monkeypatch) -> dict:
    """`out` as a previous render left it (or absent), and a .env without secrets; its snapshot."""
    shutil.rmtree(out.parent, ignore_errors=True)
    monkeypatch.delenv("K8S_INGRESS_HOST", raising=False)
    if existing:
        render_k8s(site, load_catalog(), MODEL, out)
        monkeypatch.setenv("K8S_INGRESS_HOST", "chat.example.com")  # so the next render changes the directory
    site.env_file.write_text(BASE_ENV, encoding="utf-8")
    return snapshot(out.parent.parent, skip=site.state_dir)


@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
def test_a_failure_at_any_step_leaves_env_and_directory_byte_identical(site, tmp_path, monkeypatch, existing):
    out = tmp_path / "deploy" / "k8s"
    _baseline(site, out, existing, monkeypatch)
    with monkeypatch.context() as patch:
        steps = _fail_at(patch, 10**6, site.state_dir)
        render_k8s(site, load_catalog(), MODEL, out)  # counts the steps of a render that succeeds
    assert len(steps) >= 3
    for step in range(len(steps)):
        before = _baseline(site, out, existing, monkeypatch)
        with monkeypatch.context() as patch:
            _fail_at(patch, step, site.state_dir)
            try:
                render_k8s(site, load_catalog(), MODEL, out)
            except ControllerError:
                pass
            else:
                continue  # a failure while tidying up after the commit: the render itself succeeded
        assert snapshot(out.parent.parent, skip=site.state_dir) == before, f"{steps[step]} failed and left a change"
