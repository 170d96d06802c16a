"""The bundle format for air-gapped sites: a manifest, its members, and their verification.

A bundle is one uncompressed tar file or a directory (for media with file-size limits) holding:

    manifest.json                         this module's Manifest
    images.tar                            `docker save` of every image the profiles need
    models/ORG--NAME/REV/FILE             the files of the revision in use of each model
    catalog.yaml                          the user catalog, when there is one

Pure: the manifest, member names, hashing and verification. Reading and writing a tar file or a
directory is controller.bundle.reader and controller.bundle.writer; `docker save` and `docker load`
around them are controller.bundle.create and controller.bundle.load.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from collections.abc import Iterator
from typing import IO, Annotated, Protocol

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from controller.config.profile_fields import check_hf_repo_id
from controller.errors import InputError
from controller.json_manifest import load_json, validated
from controller.operator_ui import Advance

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
IMAGES_MEMBER = "images.tar"
CATALOG_MEMBER = "catalog.yaml"
CHUNK = 1 << 20
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
# A manifest nests five levels (manifest, models, model, files, file); the limit keeps json's recursion safe.
MAX_MANIFEST_DEPTH = 16
# Relative paths of plain names: no '..', no absolute path, nothing a tar could use to escape.
_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9._+=-]*"
MEMBER_PATH = re.compile(rf"^{_SEGMENT}(/{_SEGMENT})*$")
# The longest name of one file or directory most file systems hold (NAME_MAX): a snapshot path's parts.
NAME_MAX = 255

# A blob is named by its content's hash, as the hub names them: sha256 (64 hex digits) or git's blob sha1 (40).
BLOB_NAME = re.compile(r"^([0-9a-f]{40}|[0-9a-f]{64})$")

MemberPath = Annotated[str, Field(pattern=MEMBER_PATH.pattern, max_length=1024)]
# A Hugging Face repo id only, checked as a profile's model is.
HfRepoId = Annotated[str, Field(max_length=193), AfterValidator(check_hf_repo_id)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Member(_Strict):
    path: MemberPath
    size: int = Field(ge=0)
    sha256: Sha256


class ImageEntry(_Strict):
    reference: str = Field(min_length=1, max_length=512)
    id: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")


class ModelFile(_Strict):
    path: MemberPath  # inside the snapshot
    member: MemberPath
    blob: str | None = Field(None, pattern=BLOB_NAME.pattern)


class ModelEntry(_Strict):
    model: HfRepoId
    revision: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    profiles: list[str]
    files: list[ModelFile]


class Manifest(_Strict):
    format_version: int = Field(ge=1)
    controller_version: str
    created: str
    profiles: list[str]
    images: list[ImageEntry]
    models: list[ModelEntry]
    catalog: MemberPath | None = None
    members: list[Member]

    def member(self, path: str) -> Member:
        return next(m for m in self.members if m.path == path)

    @property
    def total_bytes(self) -> int:
        return sum(m.size for m in self.members)


def model_member(model: str, revision: str, path: str) -> str:
    return f"models/{model.replace('/', '--')}/{revision}/{path}"


def parse_manifest(text: bytes, origin: str) -> Manifest:
    """The manifest, checked: a newer format version is refused before its fields are read."""
    data = load_json(text, f"bundle {origin}: {MANIFEST_NAME}", max_depth=MAX_MANIFEST_DEPTH)
    version = data.get("format_version") if isinstance(data, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise InputError(
            f"bundle {origin}: format version {version} is newer than this controller reads ({FORMAT_VERSION})",
            hint="install the controller version that created the bundle (see controller_version in its manifest)",
        )
    manifest = validated(Manifest, data, f"bundle {origin}: {MANIFEST_NAME}")
    paths = [m.path for m in manifest.members]
    if len(set(paths)) != len(paths) or MANIFEST_NAME in paths:
        raise InputError(f"bundle {origin}: {MANIFEST_NAME} lists a member twice")
    named = {f.member for model in manifest.models for f in model.files}
    named |= {IMAGES_MEMBER} if manifest.images else set()
    named |= {manifest.catalog} if manifest.catalog else set()
    unlisted = sorted(named - set(paths))
    if unlisted:
        raise InputError(f"bundle {origin}: {MANIFEST_NAME} refers to member {unlisted[0]} without its checksum")
    _check_models(manifest, f"bundle {origin}: {MANIFEST_NAME}")
    return manifest


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _check_models(manifest: Manifest, where: str) -> None:
    """Each model once; in each, a snapshot path once and never both a file and a directory; a blob
    named by a sha256 carries the content of that sha256 (the member's checksum, verified later)."""
    seen: set[str] = set()
    checksums = {m.path: m.sha256 for m in manifest.members}
    for model in manifest.models:
        if model.model in seen:
            raise InputError(f"{where} lists model {model.model} twice", hint="a bundle carries one revision per model")
        seen.add(model.model)
        files, blobs = {item.path for item in model.files}, {}
        if len(files) != len(model.files):
            twice = next(p for p in files if sum(f.path == p for f in model.files) > 1)
            raise InputError(f"{where}: model {model.model} lists the file '{twice}' twice")
        for item in model.files:
            long = next((part for part in item.path.split("/") if len(part.encode()) > NAME_MAX), None)
            if long is not None:
                raise InputError(
                    f"{where}: model {model.model} file '{_short(item.path)}' (member {_short(item.member)}): "
                    f"a name in its path is {len(long.encode())} characters long, more than a file system holds "
                    f"({NAME_MAX}); it cannot be put in the HF cache"
                )
            parent = item.path.rpartition("/")[0]
            while parent:
                if parent in files:
                    raise InputError(
                        f"{where}: model {model.model} has a file '{parent}' and a file '{item.path}' inside a "
                        f"directory of that name; a snapshot cannot hold both"
                    )
                parent = parent.rpartition("/")[0]
            sha256 = checksums[item.member]
            if item.blob and blobs.setdefault(item.blob, sha256) != sha256:
                raise InputError(f"{where}: model {model.model} names two different contents blob {item.blob}")
            if item.blob and len(item.blob) == 64 and item.blob != sha256:
                raise InputError(
                    f"{where}: model {model.model} file '{item.path}': its blob is named {item.blob[:16]}..., "
                    f"the sha256 of other content (its content's is {sha256[:16]}...); loading it would put "
                    "wrong bytes under that name in the HF cache",
                    hint="create the bundle again from an intact cache",
                )


def manifest_bytes(manifest: Manifest) -> bytes:
    return (json.dumps(manifest.model_dump(mode="json"), indent=2, sort_keys=True) + "\n").encode("utf-8")


class BundleReader(Protocol):
    """A bundle opened for reading, one tar file or a directory (controller.bundle.reader)."""

    origin: str

    def read_manifest(self) -> bytes: ...
    def names(self) -> list[str]: ...
    def open(self, path: str) -> IO[bytes]: ...
    def close(self) -> None: ...


def read_chunks(stream: IO[bytes], advance: Advance | None = None) -> Iterator[bytes]:
    while chunk := stream.read(CHUNK):
        if advance:
            advance(len(chunk))
        yield chunk


def sha256_of(stream: IO[bytes], advance: Advance | None = None) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    for chunk in read_chunks(stream, advance):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def verify_bundle(reader: BundleReader, advance: Advance | None = None) -> Manifest:
    """Read the manifest and check every member's presence, size and sha256. Raises InputError naming
    the first member that is missing, short, altered or unexpected; reads nothing else."""
    manifest = parse_manifest(reader.read_manifest(), reader.origin)
    present = set(reader.names())
    unexpected = sorted(present - {m.path for m in manifest.members} - {MANIFEST_NAME})
    if unexpected:
        raise InputError(f"bundle {reader.origin}: member {unexpected[0]} is not in the manifest")
    for member in manifest.members:
        where = f"bundle {reader.origin}: member {member.path}"
        if member.path not in present:
            raise InputError(f"{where} is missing (the bundle is truncated or incomplete)")
        try:
            with reader.open(member.path) as stream:
                digest, size = sha256_of(stream, advance)
        except (tarfile.TarError, EOFError) as exc:  # a tar file's reader: the file ends inside the member
            raise InputError(f"{where} cannot be read to its end ({exc}): the bundle is truncated") from None
        if size != member.size:
            raise InputError(f"{where} is {size} bytes, the manifest says {member.size}: truncated or altered")
        if digest != member.sha256:
            raise InputError(f"{where}: sha256 {digest[:16]}... differs from the manifest's: the member was altered")
    return manifest
