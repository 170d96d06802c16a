"""Operator files: atomic writes (temp file + rename), and reads that fail with a clear error.

Reading maps encoding, permission, not-a-file and parse errors to the caller's InputError
subclass, naming the file and the line. (YAML is parsed in yaml_in.py.)"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from controller.errors import InputError, WriteFailed


def write_atomic(path: Path, text: str, mode: int = 0o644) -> bool:
    """Write text to path; returns False (and writes nothing) when the content is already there.

    The new text goes to a temp file beside it, is flushed to disk, then renamed over the old file:
    a full disk, a crash or a kill leaves either the old file or the new one, never a mix. A write
    that fails is a WriteFailed naming the file; the old file is untouched and no temp file stays.
    """
    if path.exists() and path.read_text(encoding="utf-8") == text and (path.stat().st_mode & 0o777) == mode:
        return False
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            # Without it a power cut after the rename can leave an empty file under the new name.
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise write_failed(path, exc) from None
        raise
    return True


def write_failed(path: Path, exc: OSError) -> WriteFailed:
    """A write to `path` that the filesystem refused, as a message that names the file and the cause."""
    kept = f"{path.name} is unchanged" if path.exists() else f"{path.name} was not created"
    if exc.errno == errno.ENOSPC:
        hint = f"the filesystem holding {path.parent} is full: free some space and run the command again"
    elif exc.errno == errno.EROFS:
        hint = f"{path.parent} is on a read-only filesystem"
    else:
        hint = f"check that {path.parent} is writable"
    return WriteFailed(f"cannot write {path}: {exc.strerror or exc} ({kept})", hint=hint)


# ----- reading operator files --------------------------------------------------------------------

MAX_INPUT_BYTES = 1024 * 1024


def read_text_file(path: Path, error: type[InputError], *, what: str, max_bytes: int = MAX_INPUT_BYTES) -> str:
    """The UTF-8 text of an operator's file; every way it can be unreadable becomes `error` naming the file."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise error(f"{what} {path}: file not found") from None
    except IsADirectoryError:
        raise error(f"{what} {path}: is a directory, not a file") from None
    except PermissionError:
        raise error(f"{what} {path}: permission denied (cannot read it)") from None
    except OSError as exc:
        raise error(f"{what} {path}: cannot read it ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise error(f"{what} {path}: larger than {max_bytes // 1024} KiB; this is not a settings or catalog file")
    return decode_utf8(data, f"{what} {path}", error)


def decode_utf8(data: bytes, origin: str, error: type[InputError]) -> str:
    """Text of an operator's file read elsewhere (a bundle member); bad UTF-8 is `error` naming origin and line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise error(f"{origin} line {line}: not valid UTF-8 (byte 0x{data[exc.start]:02x})") from None


# Host directories that must never be bind-mounted into a container (Compose) or be a hostPath
# volume (Kubernetes), as a whole or (for the trees below) anywhere inside: mounting one hands the
# container the host, or a node's container runtime, kubelet, pod secrets and logs.
SYSTEM_DIRS = frozenset(
    Path(p)
    for p in (
        "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media",
        "/mnt", "/opt", "/proc", "/root", "/run", "/sbin", "/snap", "/srv", "/sys", "/tmp", "/usr",
        "/usr/bin", "/usr/lib", "/usr/local", "/usr/sbin", "/usr/share", "/var", "/var/lib", "/var/tmp",
    )
)  # fmt: skip
SYSTEM_TREES = tuple(
    Path(p)
    for p in (
        "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run", "/sbin", "/sys",
        "/usr/bin", "/usr/lib", "/usr/lib32", "/usr/lib64", "/usr/libexec", "/usr/sbin",
        "/var/lib/containerd", "/var/lib/containers", "/var/lib/docker", "/var/lib/kubelet", "/var/lib/rancher",
        "/var/lib/etcd", "/var/log", "/var/run",
    )
)  # fmt: skip


def _system_dir(path: Path) -> Path | None:
    """The system directory `path` (absolute, normalised) is or lies in, or None."""
    if path in SYSTEM_DIRS or path == Path.home().resolve():
        return path
    return next((tree for tree in SYSTEM_TREES if path.is_relative_to(tree)), None)


def system_dir_problem(path: Path) -> str | None:
    """Why `path` must not be mounted into a container, or None when it may be. Both the path as
    written (what a Kubernetes node mounts) and where its symlinks lead here are checked."""
    try:
        expanded = path.expanduser()
        resolved = expanded.resolve()
    except RuntimeError:  # "~name" of a user this machine does not have
        return f"{path} names the home of an unknown user; write an absolute path or ~/path"
    for candidate in dict.fromkeys((Path(os.path.abspath(expanded)), resolved)):
        found = _system_dir(candidate)
        shown = candidate if candidate == resolved == Path(os.path.abspath(expanded)) else f"{path} ({candidate})"
        if found == candidate:
            return f"{shown} is a system directory; use a directory of its own, e.g. /srv/models/NAME"
        if found is not None:
            return f"{shown} is inside the system directory {found}"
    return None


def expand_home(path: Path, error: type[Exception], what: str) -> Path:
    """`~/x` expanded; `~name/x` of a user this machine does not have is a clear error, not a crash."""
    try:
        return path.expanduser()
    except RuntimeError:
        raise error(f"{what} {path}: '~' names the home of an unknown user; write an absolute path or ~/path") from None
