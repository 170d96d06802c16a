"""Open WebUI's data folder in its container: a consistent copy out (SQLite's online backup API,
never a plain copy of a live database), the facts a backup records, and a copy back in.

Everything goes through `docker compose` (the one subprocess seam): `exec` in the running
container, `cp` out of and into it, and `run --rm` (a one-off container of the same image and
volume) to empty the folder while Open WebUI is stopped."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

from controller.errors import ControllerError
from controller.runtime.docker import ComposeProject, run_command

SERVICE = "webui"
DATA_DIR = "/app/backend/data"
# Open WebUI's own database, and the vector store's (Chroma keeps SQLite too): both are copied with
# the online backup API; every other file is copied as it is.
DATABASES = ("webui.db", "vector_db/chroma.sqlite3")
SNAPSHOT_DIR = "/tmp/controller-backup"

# Run in the container with its Python (the official image is a python image). Arguments, not
# secrets: this command line is visible in `ps`.
_SNAPSHOT = """
import os, sqlite3, sys
data, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
for name in sys.argv[3:]:
    path = os.path.join(data, name)
    if not os.path.exists(path):
        continue
    target = os.path.join(out, name.replace('/', '__'))
    source = sqlite3.connect('file:' + path + '?mode=ro', uri=True)
    copy = sqlite3.connect(target)
    source.backup(copy)
    copy.close()
    source.close()
"""

# The schema revisions this image's migrations know (Open WebUI migrates with alembic, forward only),
# the head they end at, and its version; found without importing the application.
_IMAGE_FACTS = """
import importlib.metadata, importlib.util, json, pathlib, re
spec = importlib.util.find_spec('open_webui')
root = pathlib.Path(list(spec.submodule_search_locations)[0])
def found(name, text):
    pattern = '^' + name + r'''(?:\\s*:[^=\\n]*)?\\s*=\\s*['"]([0-9A-Za-z_]+)['"]'''
    return set(re.findall(pattern, text, re.M))
texts = [f.read_text() for f in (root / 'migrations' / 'versions').glob('*.py')]
revisions = set().union(*(found('revision', t) for t in texts))
def parents_in(text):  # down_revision may name several (a merge migration): every id on its line
    lines = [line.split('=', 1)[1] for line in text.splitlines() if re.match(r'down_revision\\b.*=', line)]
    return {rev for line in lines for rev in re.findall(r'''['"]([0-9A-Za-z_]+)['"]''', line)}
parents = set().union(*(parents_in(t) for t in texts))
try:
    version = importlib.metadata.version('open-webui')
except importlib.metadata.PackageNotFoundError:
    package = next((p / 'package.json' for p in root.parents if (p / 'package.json').is_file()), None)
    version = json.loads(package.read_text()).get('version') if package else None
print(json.dumps({'revisions': sorted(revisions), 'heads': sorted(revisions - parents), 'version': version}))
"""

_COUNTS = """
import json, sqlite3, sys
db = sqlite3.connect('file:' + sys.argv[1] + '?mode=ro', uri=True)
users = db.execute('SELECT count(*) FROM "user"').fetchone()[0]
chats = db.execute('SELECT count(*) FROM chat').fetchone()[0]
revision = db.execute('SELECT version_num FROM alembic_version').fetchone()
print(json.dumps({'users': users, 'chats': chats, 'revision': revision[0] if revision else None}))
"""

_PACKAGE_VERSION = """
import importlib.metadata, json, sys
found = None
for name in sys.argv[1:]:
    try:
        found = importlib.metadata.version(name)
        break
    except importlib.metadata.PackageNotFoundError:
        pass
print(json.dumps({'version': found}))
"""


def copy_out(project: ComposeProject, dest: Path, timeout: float = 1800) -> Path:
    """Open WebUI's data folder at dest/data, its databases replaced by online-backup snapshots
    taken while it serves. Returns dest/data."""
    data = dest / "data"
    try:  # the snapshot holds password hashes: it never stays in the container
        project.exec(SERVICE, "python3", "-c", _SNAPSHOT, DATA_DIR, SNAPSHOT_DIR, *DATABASES, timeout=timeout)
        project.run("cp", f"{SERVICE}:{DATA_DIR}/.", str(data), timeout=timeout)
        project.run("cp", f"{SERVICE}:{SNAPSHOT_DIR}/.", str(dest / "snapshots"), timeout=timeout)
    finally:
        project.exec(SERVICE, "rm", "-rf", SNAPSHOT_DIR, timeout=60)
    for name in DATABASES:
        live = data / name
        for leftover in (live, live.with_name(live.name + "-wal"), live.with_name(live.name + "-shm")):
            leftover.unlink(missing_ok=True)
        snapshot = dest / "snapshots" / name.replace("/", "__")
        if snapshot.exists():
            live.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(snapshot, live)
    shutil.rmtree(dest / "snapshots", ignore_errors=True)
    return data


def database_facts(database: Path) -> dict:
    """Schema revision and user and chat counts, read from a snapshot (not the live database)."""
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            revision = db.execute("SELECT version_num FROM alembic_version").fetchone()
            users = db.execute('SELECT count(*) FROM "user"').fetchone()[0]
            chats = db.execute("SELECT count(*) FROM chat").fetchone()[0]
    except sqlite3.Error as exc:
        raise ControllerError(f"cannot read Open WebUI's database {database}: {exc}",
                              hint="is this Open WebUI's data folder?") from None  # fmt: skip
    if revision is None:
        raise ControllerError(f"Open WebUI's database {database} has no schema revision (alembic_version is empty)")
    return {"schema_revision": revision[0], "users": users, "chats": chats}


def image_facts(project: ComposeProject, *, running: bool, timeout: float = 300) -> dict:
    """The schema revisions and version of the Open WebUI image the compose file names: asked of the
    running container, or of a one-off container of the same image when it is stopped."""
    argv = ["python3", "-c", _IMAGE_FACTS]
    if running:
        out = project.exec(SERVICE, *argv, timeout=timeout).stdout
    else:
        out = project.run("run", "--rm", "--no-deps", "-T", "--entrypoint", "python3", SERVICE, *argv[1:],
                          timeout=timeout).stdout  # fmt: skip
    return _image_facts(out, f"{SERVICE}'s image")


def image_facts_of(reference: str, timeout: float = 300) -> dict:
    """The same facts of an image the compose file does not name yet (a one-off container of it,
    without a network)."""
    out = run_command(["docker", "run", "--rm", "--network", "none", "--entrypoint", "python3", reference, "-c",
                       _IMAGE_FACTS], timeout=timeout).stdout  # fmt: skip
    return _image_facts(out, reference)


def _image_facts(out: str, image: str) -> dict:
    facts = _last_json_line(out, f"the schema revisions of {image}")
    if not facts.get("revisions"):
        raise ControllerError(f"found no database migrations in {image}", hint="is WEBUI_IMAGE an Open WebUI image?")
    return {"revisions": set(facts["revisions"]), "heads": set(facts.get("heads") or ()),
            "version": facts.get("version")}  # fmt: skip


def live_counts(project: ComposeProject, timeout: float = 120) -> dict:
    """User and chat counts, and the schema revision, read from the running Open WebUI's database
    (read-only)."""
    out = project.exec(SERVICE, "python3", "-c", _COUNTS, f"{DATA_DIR}/{DATABASES[0]}", timeout=timeout).stdout
    counts = _last_json_line(out, "Open WebUI's user and chat counts")
    return {"users": int(counts["users"]), "chats": int(counts["chats"]), "revision": counts.get("revision")}


def package_version(project: ComposeProject, service: str, names: tuple[str, ...], timeout: float = 60) -> str | None:
    """The installed version of the first of `names` in the service's container (its metadata, not
    an import: importing vLLM takes seconds)."""
    out = project.exec(service, "python3", "-c", _PACKAGE_VERSION, *names, timeout=timeout).stdout
    return _last_json_line(out, f"the package version in {service}").get("version")


def _last_json_line(out: str, what: str) -> dict:
    try:
        value = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise ControllerError(f"could not read {what}: unexpected output {out.strip()[-200:]!r}") from None
    if not isinstance(value, dict):
        raise ControllerError(f"could not read {what}: unexpected output {out.strip()[-200:]!r}")
    return value


def copy_in(project: ComposeProject, data: Path, timeout: float = 1800) -> None:
    """Replace the (stopped) Open WebUI's data folder with `data`."""
    project.run("run", "--rm", "--no-deps", "-T", "--entrypoint", "find", SERVICE, DATA_DIR, "-mindepth", "1",
                "-delete", timeout=timeout)  # fmt: skip
    project.run("cp", f"{data}/.", f"{SERVICE}:{DATA_DIR}", timeout=timeout)
