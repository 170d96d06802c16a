"""A bundle's models into the Hugging Face cache: check, stage, commit.

Check: every destination (blob, snapshot link, refs/main, and each directory above them) is looked at
before anything is written; a file where a directory is needed, or a cached file with other content,
is refused (InputError naming it): nothing cached is ever overwritten. Stage: the content is copied
into a directory beside the cache (same filesystem), its sha256 and its blob name's hash checked while
it is copied. Commit: staged files are moved into place, links and refs written, each step with its
undo, so that a failure puts the cache back as it was (Undo.run).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from controller.bundle.format import Advance, BundleReader, Manifest, Member, ModelEntry, ModelFile, read_chunks
from controller.errors import InputError, WriteFailed
from controller.files import write_atomic
from controller.runtime import hf_cache


@dataclass(frozen=True)
class Placement:
    """One snapshot file of the bundle in the cache."""

    model: ModelEntry
    item: ModelFile
    member: Member
    content: Path  # the blob, or the snapshot file itself when the bundle carries no blob name
    link: Path | None  # snapshots/REV/FILE -> ../../blobs/BLOB, with a blob
    copy: bool  # the content is not in the cache yet
    make_link: bool


@dataclass(frozen=True)
class CachePlan:
    placements: list[Placement]
    refs: list[tuple[ModelEntry, Path]]  # refs/main to point at the bundle's revision

    @property
    def writes(self) -> list[Placement]:
        return [p for p in self.placements if p.copy or p.make_link]

    @property
    def copy_bytes(self) -> int:
        return sum(p.member.size for p in self.placements if p.copy)


def _refuse(path: Path, problem: str) -> InputError:
    return InputError(
        f"{path} {problem}; loading the bundle would overwrite it",
        hint="move it away (or repair the HF cache), then load again; nothing was loaded",
    )


def _check_directories(cache: Path, path: Path) -> None:
    """Every existing directory on the way from the cache to path must be one (links to one are fine)."""
    for parent in reversed(path.relative_to(cache).parents):
        where = cache / parent
        if os.path.lexists(where) and not where.is_dir():
            raise InputError(
                f"{where} is not a directory, but the bundle puts files inside it",
                hint="move it away (or repair the HF cache), then load again; nothing was loaded",
            )


def _same_content(path: Path, member: Member) -> bool:
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest() == member.sha256


def _present(path: Path, member: Member) -> bool:
    """Whether path already holds the member's content; refuses anything else that is there."""
    if not os.path.lexists(path):
        return False
    if not path.is_file():
        raise _refuse(path, "exists and is not a regular file (a directory, or a broken link)")
    if path.stat().st_size != member.size or not _same_content(path, member):
        raise _refuse(path, f"exists with other content than the bundle's {member.path}")
    return True


def plan_cache(manifest: Manifest, cache: Path) -> CachePlan:
    """What of the bundle's models the cache lacks; refuses (InputError) every conflict first."""
    placements, refs, planned = [], [], set()
    if os.path.lexists(cache) and not cache.is_dir():
        raise InputError(f"HF_CACHE_DIR {cache} is not a directory", hint="set HF_CACHE_DIR in .env to a directory")
    for model in manifest.models:
        repo = hf_cache.repo_dir(cache, model.model)
        for item in model.files:
            member = manifest.member(item.member)
            snapshot_file = repo / "snapshots" / model.revision / item.path
            content = repo / "blobs" / item.blob if item.blob else snapshot_file
            link = snapshot_file if item.blob else None
            for path in (content, link) if link else (content,):
                _check_directories(cache, path)
            copy = not _present(content, member) and content not in planned
            planned.add(content)
            make_link = link is not None and not _present(link, member)
            placements.append(Placement(model, item, member, content, link, copy, make_link))
        ref = repo / "refs" / hf_cache.DEFAULT_REF
        _check_directories(cache, ref)
        if os.path.lexists(ref) and not ref.is_file():
            raise _refuse(ref, "exists and is not a regular file")
        if hf_cache.revision(cache, model.model) != model.revision:
            refs.append((model, ref))
    return CachePlan(placements, refs)


class Staging:
    """The bundle's new content, in a directory beside the cache, checked while it is copied."""

    def __init__(self, cache: Path):
        anchor = cache
        while not anchor.is_dir():  # the nearest existing directory: the same filesystem as the cache
            anchor = anchor.parent
        self.dir = Path(tempfile.mkdtemp(prefix=".bundle-load-", dir=anchor))
        self.files: dict[Path, Path] = {}  # destination -> staged copy

    def add(self, reader: BundleReader, placement: Placement, advance: Advance | None) -> None:
        staged = self.dir / str(len(self.files))
        sha256, blob = hashlib.sha256(), placement.item.blob or ""
        git_sha1 = None
        if len(blob) == 40:  # the hub names small files by git's blob id: sha1 of "blob SIZE\0" + content
            git_sha1 = hashlib.sha1(b"blob %d\0" % placement.member.size, usedforsecurity=False)
        with staged.open("wb") as sink, reader.open(placement.member.path) as stream:
            for chunk in read_chunks(stream, advance):
                sha256.update(chunk)
                if git_sha1 is not None:
                    git_sha1.update(chunk)
                sink.write(chunk)
        if sha256.hexdigest() != placement.member.sha256:
            raise InputError(f"bundle member {placement.member.path} changed while it was loaded; nothing was loaded")
        if git_sha1 is not None and git_sha1.hexdigest() != blob:
            raise InputError(
                f"bundle member {placement.member.path} (model {placement.model.model} file '{placement.item.path}') "
                f"is carried as blob {blob[:16]}..., which is not its content's hash ({git_sha1.hexdigest()[:16]}...); "
                "nothing was loaded",
                hint="create the bundle again from an intact cache",
            )
        staged.chmod(0o644)
        self.files[placement.content] = staged

    def discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Undo:
    """The steps that take back what a commit did, run last to first."""

    steps: list[Callable[[], None]] = field(default_factory=list)

    def add(self, step: Callable[[], None]) -> None:
        self.steps.append(step)

    def makedirs(self, path: Path) -> None:
        missing = []
        while not path.is_dir():
            missing.append(path)
            path = path.parent
        for directory in reversed(missing):
            directory.mkdir()
            self.add(directory.rmdir)

    def run(self) -> None:
        for step in reversed(self.steps):
            try:
                step()
            except OSError:
                pass


def _write_ref(ref: Path, revision: str, undo: Undo) -> None:
    old = ref.read_bytes() if ref.is_file() else None
    undo.makedirs(ref.parent)
    write_atomic(ref, revision)
    undo.add(lambda: ref.write_bytes(old) if old is not None else ref.unlink())


def commit(plan: CachePlan, staging: Staging | None, undo: Undo) -> None:
    """Move the staged content into place, then the links and refs; every step recorded in undo."""
    try:
        for placement in plan.writes:
            if placement.copy and staging is not None:
                undo.makedirs(placement.content.parent)
                os.replace(staging.files[placement.content], placement.content)
                undo.add(placement.content.unlink)
            if placement.make_link and placement.link is not None:
                undo.makedirs(placement.link.parent)
                os.symlink(os.path.relpath(placement.content, placement.link.parent), placement.link)
                undo.add(placement.link.unlink)
        for model, ref in plan.refs:
            _write_ref(ref, model.revision, undo)
    except OSError as exc:
        raise WriteFailed(f"loading into the HF cache failed at {exc.filename}: {exc.strerror or exc}") from None
