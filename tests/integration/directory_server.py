"""A real OpenLDAP directory for the tests of LDAP sign-in.

A mock LDAP server would only repeat our own idea of how binds, ACLs and group filters behave; slapd
is the real thing, from Debian's package in the locally built `directory` image (images/directory/,
no registry needed). The database slapd's postinst made in the image is not used: every container
is configured from scratch here (cn=config from an LDIF), and the entries are added through the
running server, because the memberof overlay (which computes `memberOf`, as Active Directory does
natively) sees only operations that go through slapd; slapadd would bypass it.

    with running_directory(docker_client, images["directory"]) as directory:
        ... ldap://{directory.host}:{directory.port}, bind as directory.bind_dn ...
"""

from __future__ import annotations

import base64
import hashlib
import io
import posixpath
import secrets
import socket
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import docker

from controller.errors import NotReady
from controller.phases import wait_for
from tests.integration import harness

BASE_DN = "dc=example,dc=org"
PEOPLE_DN = f"ou=people,{BASE_DN}"
GROUP_DN = f"cn=chat-users,ou=groups,{BASE_DN}"
BIND_DN = f"cn=webui-reader,ou=services,{BASE_DN}"
# The identity of root over ldapi:// (SASL EXTERNAL, peer credentials): it administers both
# databases, so no administrator password exists at all.
LOCAL_ROOT = "gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth"
WORKDIR = "/srv/directory"  # config, database and LDIF files; nothing of the image's own slapd setup


@dataclass(frozen=True)
class User:
    uid: str
    dn: str
    cn: str
    mail: str
    password: str


@dataclass(frozen=True)
class Directory:
    host: str  # reachable from this host's processes and from containers on any Docker network
    port: int
    base_dn: str
    people_dn: str
    bind_dn: str  # the service account that searches ou=people
    bind_password: str  # has `$`, a double quote and a space: callers check that it is passed literally
    allowed_filter: str  # matches the members of cn=chat-users only
    alice: User  # in cn=chat-users
    bob: User  # not in any group
    container_name: str

    @property
    def url(self) -> str:
        return f"ldap://{self.host}:{self.port}"


def _ssha(password: str) -> str:
    """A {SSHA} userPassword value: slapd checks it without the clear text ever reaching a file."""
    salt = secrets.token_bytes(8)
    return "{SSHA}" + base64.b64encode(hashlib.sha1(password.encode() + salt).digest() + salt).decode()


def _user(uid: str, cn: str) -> User:
    return User(uid, f"uid={uid},{PEOPLE_DN}", cn, f"{uid}@example.org", secrets.token_urlsafe(12))


def _config_ldif() -> str:
    # Only what the tests need: three schemas, one mdb database with ACLs, the memberof overlay.
    return f"""\
dn: cn=config
objectClass: olcGlobal
cn: config

dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb
olcModuleLoad: memberof

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif
include: file:///etc/ldap/schema/cosine.ldif
include: file:///etc/ldap/schema/inetorgperson.ldif

dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend
olcAccess: {{0}}to dn.base="" by * read
olcAccess: {{1}}to dn.base="cn=subschema" by * read

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: {{0}}to * by dn.exact="{LOCAL_ROOT}" manage by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcDbDirectory: {WORKDIR}/data
olcSuffix: {BASE_DN}
olcRootDN: {LOCAL_ROOT}
olcDbIndex: objectClass eq
olcDbIndex: uid eq
olcAccess: {{0}}to attrs=userPassword by self =xw by anonymous auth by * none
olcAccess: {{1}}to * by dn.exact="{BIND_DN}" read by self read by * none

dn: olcOverlay={{0}}memberof,olcDatabase={{1}}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcMemberOf
olcOverlay: {{0}}memberof
olcMemberOfRefInt: TRUE
"""


def _data_ldif(directory: Directory) -> str:
    entries = [
        f"dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n",
        *(
            f"dn: ou={ou},{BASE_DN}\nobjectClass: organizationalUnit\nou: {ou}\n"
            for ou in ("people", "services", "groups")
        ),
        f"dn: {BIND_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
        f"cn: webui-reader\nuserPassword: {_ssha(directory.bind_password)}\n",
    ]
    for user in (directory.alice, directory.bob):
        given, surname = user.cn.split()
        entries.append(
            f"dn: {user.dn}\nobjectClass: inetOrgPerson\nuid: {user.uid}\ncn: {user.cn}\nsn: {surname}\n"
            f"givenName: {given}\nmail: {user.mail}\nuserPassword: {_ssha(user.password)}\n"
        )
    # The group comes after its members: the overlay adds memberOf to entries that exist.
    entries.append(f"dn: {GROUP_DN}\nobjectClass: groupOfNames\ncn: chat-users\nmember: {directory.alice.dn}\n")
    return "\n".join(entries)


def _archive(files: dict[str, str]) -> bytes:
    """A tar of WORKDIR's input files, for put_archive: nothing secret goes on a command line."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        folder = tarfile.TarInfo(posixpath.basename(WORKDIR))
        folder.type, folder.mode = tarfile.DIRTYPE, 0o700
        tar.addfile(folder)
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{folder.name}/{name}")
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _exec(container, *command: str) -> None:
    code, output = container.exec_run(list(command))
    if code != 0:
        text = output.decode(errors="replace")
        raise RuntimeError(f"{' '.join(command)} failed in {container.name} (exit {code}):\n{text}")


def _wait_until_serving(container, directory: Directory) -> None:
    def serving() -> None:
        container.reload()
        if container.status != "running":  # a bad config: slapd exits at once, no point waiting
            logs = container.logs(tail=40).decode(errors="replace")
            raise RuntimeError(f"slapd in {container.name} is {container.status}:\n{logs}")
        code, output = container.exec_run(["ldapwhoami", "-Q", "-Y", "EXTERNAL", "-H", "ldapi:///"])
        if code != 0:
            raise NotReady(f"ldapi:// does not answer yet: {output.decode(errors='replace').strip()}")
        try:
            socket.create_connection((directory.host, directory.port), timeout=2).close()
        except OSError as exc:
            raise NotReady(f"{directory.url} refuses connections: {exc}") from None

    wait_for("the test directory serving", serving, deadline_s=60, interval_s=0.2)


@contextmanager
def running_directory(docker_client: docker.DockerClient, image: str) -> Iterator[Directory]:
    """A fresh slapd with the service account, alice (in cn=chat-users) and bob (in no group);
    the container is removed on exit, also when starting it failed."""
    directory = Directory(
        # The default bridge's gateway is one of this host's addresses: containers on any network
        # reach it through their own gateway, and this host's processes reach it as a local address.
        host=harness.host_for_containers(docker_client),
        port=harness.free_port(),
        base_dn=BASE_DN,
        people_dn=PEOPLE_DN,
        bind_dn=BIND_DN,
        bind_password=f'{secrets.token_urlsafe(9)}$ "{secrets.token_urlsafe(9)}',
        allowed_filter=f"(memberOf={GROUP_DN})",
        alice=_user("alice", "Alice Example"),
        bob=_user("bob", "Bob Example"),
        container_name=f"ctest-directory-{secrets.token_hex(4)}",
    )
    # The host's network, not a published port: a container on another bridge network reaches a
    # published port only through Docker's userland proxy (with userland-proxy=false the isolation
    # rules drop it, moby#38784); a socket of the host's own needs no proxy and no forwarding.
    script = (
        f"mkdir -p {WORKDIR}/slapd.d {WORKDIR}/data /run/slapd && "
        f"slapadd -n0 -F {WORKDIR}/slapd.d -l {WORKDIR}/config.ldif && "
        f'exec slapd -d stats -F {WORKDIR}/slapd.d -h "{directory.url}/ ldapi:///"'
    )
    container = docker_client.containers.create(
        image, ["sh", "-c", script], name=directory.container_name, network_mode="host"
    )
    try:
        files = {"config.ldif": _config_ldif(), "data.ldif": _data_ldif(directory)}
        container.put_archive(posixpath.dirname(WORKDIR), _archive(files))
        container.start()
        _wait_until_serving(container, directory)
        _exec(container, "ldapadd", "-Q", "-Y", "EXTERNAL", "-H", "ldapi:///", "-f", f"{WORKDIR}/data.ldif")
        yield directory
    finally:
        container.remove(force=True, v=True)
