"""The backup file: one uncompressed tar of flat members (manifest.json first), written as
FILE.partial with mode 0600 and renamed at the end, and read back only after every member's size and
sha256 match the manifest."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from controller.backup.manifest import MANIFEST, MEMBER_NAMES, Manifest, Member, parse_manifest
from controller.errors import InputError
from controller.operator_ui import Advance

CHUNK = 1024 * 1024
MAX_MANIFEST_BYTES = 1024 * 1024
DAMAGED = "the file is damaged or truncated, or is not a controller backup: nothing was changed"


def sha256_file(path: Path, advance: Advance | None = None) -> Member:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if advance:
                advance(len(chunk))
    return Member(size=size, sha256=digest.hexdigest())


def pack_folder(folder: Path, out: Path, advance: Advance | None = None) -> None:
    """Open WebUI's data folder as a tar with paths relative to it (what `copy_in` puts back)."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(folder)), recursive=False)
            if advance and path.is_file():
                advance(path.stat().st_size)


def unpack_folder(member: Path, folder: Path) -> None:
    """The data folder back from its tar: regular files and folders under relative paths only."""
    with _open(member) as tar:
        for info in tar.getmembers():
            parts = Path(info.name).parts
            if not (info.isfile() or info.isdir()) or info.name.startswith("/") or ".." in parts:
                raise InputError(f"{member.name}: member {info.name!r} is not a plain file or folder inside the "
                                 "data folder", hint=DAMAGED)  # fmt: skip
        # Python's "data" filter (3.11.4+) checks the same again where it exists.
        extract = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(folder, **extract)


@contextmanager
def partial_file(out: Path) -> Iterator[Path]:
    """FILE.partial (0600) while it is written, renamed to FILE when done; removed on any failure."""
    partial = out.with_name(out.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)
    try:
        yield partial
        with partial.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_backup(out: Path, manifest: Manifest, members: dict[str, Path], advance: Advance | None = None) -> None:
    with partial_file(out) as partial, tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        text = manifest.to_json().encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mode = len(text), 0o600
        tar.addfile(info, io.BytesIO(text))
        for name, path in members.items():
            tar.add(path, arcname=name, recursive=False)
            if advance:
                advance(path.stat().st_size)


def read_manifest(path: Path) -> Manifest:
    """The manifest alone (first member), for the checks that come before the full verification."""
    with _open(path) as tar:
        first = tar.next()
        if first is None or first.name != MANIFEST or not first.isfile() or first.size > MAX_MANIFEST_BYTES:
            raise InputError(f"{path}: the first member is not {MANIFEST}", hint="the file is not a controller backup")
        return parse_manifest(tar.extractfile(first).read(), str(path))


def verify_and_extract(
    path: Path, manifest: Manifest, staging: Path, advance: Advance | None = None
) -> dict[str, Path]:
    """Every member, its size and sha256 as the manifest says, extracted to `staging`; nothing else."""
    found: dict[str, Path] = {}
    with _open(path) as tar:
        for info in tar:
            if info.name == MANIFEST:
                continue
            if info.name not in MEMBER_NAMES or not info.isfile() or info.name in found:
                raise InputError(
                    f"{path}: unexpected member {info.name!r}", hint="the file is damaged or not a controller backup"
                )
            expected = manifest.members.get(info.name)
            if expected is None:
                raise InputError(f"{path}: member {info.name!r} is not in the manifest", hint=DAMAGED)
            target = staging / info.name
            digest, size = hashlib.sha256(), 0
            with tar.extractfile(info) as source, target.open("wb") as sink:
                while chunk := source.read(CHUNK):
                    digest.update(chunk)
                    sink.write(chunk)
                    size += len(chunk)
                    if advance:
                        advance(len(chunk))
            if (size, digest.hexdigest()) != (expected.size, expected.sha256):
                raise InputError(
                    f"{path}: member {info.name} does not match the manifest "
                    f"({size} bytes, sha256 {digest.hexdigest()[:12]}; the manifest says "
                    f"{expected.size} bytes, {expected.sha256[:12]})",
                    hint=DAMAGED,
                )
            found[info.name] = target
    missing = sorted(set(manifest.members) - set(found))
    if missing:
        raise InputError(
            f"{path}: members {missing} are in the manifest but not in the file", hint="the file is truncated"
        )
    return found


@contextmanager
def _open(path: Path) -> Iterator[tarfile.TarFile]:
    if not path.is_file():
        what = "a folder" if path.is_dir() else "no such file"
        raise InputError(f"{path}: {what}", hint="give a file that `controller backup` wrote")
    try:
        with tarfile.open(path, "r:") as tar:
            yield tar
    except (tarfile.TarError, EOFError) as exc:
        raise InputError(f"{path}: not a readable backup ({exc})", hint=DAMAGED) from None
    except PermissionError:
        raise InputError(f"{path}: permission denied", hint="run as a user that can read it") from None
