"""The test directory (tests/integration/directory_server.py) behaves like the LDAP server the sign-in
tests need: the service account finds the members of the allowed group only, users bind with their
own passwords and not with wrong ones, and a container on a user-defined network reaches it at the
same address as this host's processes."""

from __future__ import annotations

import io
import secrets
import tarfile
from collections.abc import Iterator

import pytest
from ldap3 import SUBTREE, Connection, Server

from tests.integration.directory_server import Directory, running_directory

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def directory(docker_client, images) -> Iterator[Directory]:
    with running_directory(docker_client, images["directory"]) as server:
        yield server


def _connection(directory: Directory, user: str, password: str) -> Connection:
    return Connection(Server(directory.host, port=directory.port, connect_timeout=5), user, password)


def _search(conn: Connection, directory: Directory, uid: str, restricted: bool) -> list:
    query = f"(&(uid={uid}){directory.allowed_filter})" if restricted else f"(uid={uid})"
    conn.search(directory.people_dn, query, SUBTREE, attributes=["uid", "mail", "cn", "memberOf"])
    return list(conn.entries)


def test_the_service_account_finds_only_members_of_the_allowed_group(directory):
    conn = _connection(directory, directory.bind_dn, directory.bind_password)
    assert conn.bind(), conn.result  # the password with `$`, quotes and a space, taken literally
    try:
        [alice] = _search(conn, directory, "alice", restricted=True)
        assert (alice.entry_dn, alice.mail.value, alice.cn.value) == (directory.alice.dn, "alice@example.org",
                                                                      "Alice Example")  # fmt: skip
        assert alice.memberOf.values == ["cn=chat-users,ou=groups,dc=example,dc=org"]
        assert _search(conn, directory, "bob", restricted=True) == []
        # bob is there: the group filter, not the ACL, keeps him out
        [bob] = _search(conn, directory, "bob", restricted=False)
        assert bob.mail.value == "bob@example.org"
    finally:
        conn.unbind()


def test_users_bind_with_their_own_password_only(directory):
    alice = _connection(directory, directory.alice.dn, directory.alice.password)
    assert alice.bind(), alice.result
    alice.unbind()
    wrong = _connection(directory, directory.alice.dn, directory.bob.password)
    assert not wrong.bind()
    assert wrong.result["description"] == "invalidCredentials"
    anonymous = _connection(directory, "", "")
    assert anonymous.bind()
    assert _search(anonymous, directory, "alice", restricted=False) == []  # the ACL hides people


def test_a_container_on_a_user_defined_network_reaches_it(docker_client, images, directory):
    network = docker_client.networks.create(f"ctest-ldap-{secrets.token_hex(4)}", driver="bridge")
    command = ["ldapsearch", "-x", "-LLL", "-H", directory.url, "-D", directory.bind_dn, "-y", "/password",
               "-b", directory.people_dn, f"(&(uid=alice){directory.allowed_filter})", "mail"]  # fmt: skip
    client = docker_client.containers.create(images["directory"], command, network=network.name)
    try:
        # -y reads the whole file as the password: no trailing newline, and never on the command line
        secret = directory.bind_password.encode()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo("password")
            info.size, info.mode = len(secret), 0o600
            tar.addfile(info, io.BytesIO(secret))
        client.put_archive("/", buf.getvalue())
        client.start()
        status = client.wait(timeout=60)["StatusCode"]
        output = client.logs().decode(errors="replace")
        assert status == 0, output
        assert f"dn: {directory.alice.dn}" in output and "mail: alice@example.org" in output, output
    finally:
        client.remove(force=True)
        network.remove()
