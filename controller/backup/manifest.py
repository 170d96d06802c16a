"""What a backup file holds and how it is checked: the manifest (format, versions, Open WebUI's
schema revision, user and chat counts, every member's size and sha256). Pure: no Docker, no files."""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field

from controller.errors import InputError
from controller.json_manifest import load_json, validated

FORMAT = "controller-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# Members: Open WebUI's data folder as a tar (its database replaced by the online-backup snapshot),
# and the site's files that a restore needs to bring the same stack back.
WEBUI_DATA = "webui-data.tar"
ENV_FILE = "env"
CATALOG = "catalog.yaml"
JOURNAL = "journal.json"
MEMBER_NAMES = (WEBUI_DATA, ENV_FILE, CATALOG, JOURNAL)
REQUIRED = (WEBUI_DATA,)
# The manifest nests three levels (members.NAME.sha256); more is not one of ours.
MAX_DEPTH = 8
NOT_A_BACKUP = "the file is not a controller backup, or is damaged: nothing was changed"


class Member(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Image(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    reference: str
    id: str | None = None
    version: str | None = None


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str = Field(pattern=f"^{FORMAT}$")
    format_version: int
    created: str
    controller_version: str
    project: str
    webui: Image
    vllm: Image | None = None
    schema_revision: str = Field(pattern=r"^[0-9A-Za-z_]{1,64}$")
    users: int = Field(ge=0)
    chats: int = Field(ge=0)
    members: dict[str, Member]

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"


def parse_manifest(text: bytes, where: str) -> Manifest:
    """The manifest of the backup at `where`, or an InputError that names the first bad field."""
    raw = load_json(text, f"{where}: {MANIFEST}", max_depth=MAX_DEPTH, hint=NOT_A_BACKUP)
    if isinstance(raw, dict) and raw.get("format") == FORMAT and raw.get("format_version") != FORMAT_VERSION:
        raise InputError(
            f"{where}: backup format version {raw.get('format_version')!r}; "
            f"this controller reads version {FORMAT_VERSION}",
            hint="restore it with the controller version that wrote it (see controller_version in its manifest)",
        )
    manifest = validated(Manifest, raw, f"{where}: {MANIFEST}", hint=NOT_A_BACKUP)
    missing = [name for name in REQUIRED if name not in manifest.members]
    unknown = [name for name in manifest.members if name not in MEMBER_NAMES]
    if missing or unknown:
        raise InputError(
            f"{where}: {MANIFEST} lists members {sorted(manifest.members)}; missing {missing}, unknown {unknown}",
            hint=NOT_A_BACKUP,
        )
    return manifest


def newer_than_image(revision: str, known: set[str]) -> bool:
    """A backup whose schema revision the image's migrations do not know was written by a newer
    Open WebUI (migrations only run forward), so that image cannot read it."""
    return revision not in known
