"""`redis_client` on every kind of deployment, each a real redis-server: ACL users, unix sockets, TLS with
a CA file, Sentinel; and credentials Redis refuses, which stop `serve` and `worker` at start (exit 2)."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from core.redis_connection import check_credentials, redis_address, redis_client
from schemas.settings import Settings, ShopConfig, load_settings
from tests.conftest import SHOP_ID, free_port
from tests.reliability.processes import CLI, REPO, Cluster, shops_json
from tests.reliability.replicated import start_node, start_replicated

PASSWORD = "s3cret-Redis-pw"  # the test's own throw-away server
WRONG = "not-the-Redis-pw"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with Cluster(tmp_path) as running:
        yield running


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


@pytest.fixture
def acl_redis(cluster: Cluster) -> int:
    """A Redis whose only user is `alice` (PASSWORD); the default user is off."""
    port = free_port()
    start_node(
        cluster,
        "acl",
        port,
        *("--user", "default", "off", "--user", "alice", "on", f">{PASSWORD}", "~*", "&*", "+@all"),
        ready=lambda: _listening(port),
    )
    return port


def _settings(url: str, **extra: object) -> Settings:
    shop = ShopConfig.model_validate({"test_key": "k" * 16, "modes": ["TEST"]})
    return Settings.model_validate({"redis_url": url, "shops": {SHOP_ID: shop}, **extra})


async def test_an_acl_user_and_its_password_reach_redis(acl_redis: int) -> None:
    client = redis_client(_settings(f"redis://alice:{PASSWORD}@127.0.0.1:{acl_redis}/3"), socket_timeout_s=2)
    try:
        assert await client.acl_whoami() == "alice"
        await client.set("cvco:probe", "1")
        assert str((await client.client_info())["db"]) == "3"
    finally:
        await client.aclose()


@pytest.mark.parametrize("command", [["serve"], ["worker"], ["failed", "list"], ["events", "tail"]])
@pytest.mark.parametrize("user", ["alice", ""])
def test_credentials_redis_refuses_exit_2_naming_the_failure_never_the_password(
    acl_redis: int, command: list[str], user: str
) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("CVCO_")}
    env.update(CVCO_REDIS_URL=f"redis://{user}:{WRONG}@127.0.0.1:{acl_redis}/0", CVCO_SHOPS=shops_json())
    done = subprocess.run(  # argv built here, no shell
        [CLI, *command], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("cvco-ipn: bad configuration: ")
    assert "authentication failed" in lines[0]
    assert f"user {user or 'default'!r}" in lines[0]
    assert WRONG not in done.stderr + done.stdout


async def test_an_unreachable_redis_is_no_credentials_failure() -> None:
    # the receiver then starts and answers 503 until Redis is back
    await check_credentials(
        _settings(f"redis://alice:{WRONG}@127.0.0.1:{free_port()}/0", redis_timeout_s=0.5)
    )


def test_the_address_in_messages_never_holds_the_password() -> None:
    settings = _settings(f"rediss://alice:{PASSWORD}@cache.example:6380/2")
    assert redis_address(settings) == "rediss://cache.example:6380/2"
    sentinels = _settings(f"redis://:{PASSWORD}@ignored/1", redis_sentinels="10.0.0.1:26379,10.0.0.2:26379")
    assert PASSWORD not in redis_address(sentinels)
    assert "10.0.0.2:26379" in redis_address(sentinels)


async def test_a_unix_socket(cluster: Cluster) -> None:
    socket_path = cluster.workdir / "redis.sock"
    start_node(cluster, "unix", free_port(), "--unixsocket", str(socket_path), ready=socket_path.exists)
    client = redis_client(_settings(f"unix://{socket_path}?db=4"), socket_timeout_s=2)
    try:
        assert await client.ping()
        assert str((await client.client_info())["db"]) == "4"
    finally:
        await client.aclose()


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signed for 127.0.0.1: (ca, cert, key)."""
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key, request = directory / "server.pem", directory / "server.key", directory / "server.csr"
    openssl = ["openssl"]
    subprocess.run(  # argv built here, no shell
        [*openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test CA"]
        + ["-keyout", str(ca_key), "-out", str(ca)],
        check=True,
        capture_output=True,
    )
    subprocess.run(  # argv built here, no shell
        [*openssl, "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1"]
        + ["-keyout", str(key), "-out", str(request)],
        check=True,
        capture_output=True,
    )
    extensions = directory / "san.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1\n")
    subprocess.run(  # argv built here, no shell
        [*openssl, "x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key)]
        + ["-CAcreateserial", "-days", "1", "-extfile", str(extensions), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return ca, cert, key


async def test_tls_with_a_ca_file(cluster: Cluster) -> None:
    ca, cert, key = _certificates(cluster.workdir)
    port = free_port()
    start_node(
        cluster,
        "tls",
        free_port(),
        *("--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key)),
        *("--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"),
        ready=lambda: _listening(port),
    )
    url = f"rediss://127.0.0.1:{port}/0"
    trusting = redis_client(_settings(url, redis_ca_file=str(ca)), socket_timeout_s=2)
    untrusting = redis_client(_settings(url), socket_timeout_s=2)
    try:
        assert await trusting.ping()
        with pytest.raises(RedisConnectionError, match="certificate verify failed"):
            await untrusting.ping()
    finally:
        await trusting.aclose()
        await untrusting.aclose()


async def test_sentinel_names_the_primary_and_the_url_the_database(cluster: Cluster) -> None:
    redis = start_replicated(cluster, replicas=1, sentinels=1)
    settings = _settings(
        "redis://127.0.0.1:1/5",  # host and port ignored: the Sentinel names the primary
        redis_sentinels=f"127.0.0.1:{redis.sentinels[0].port}",
    )
    client = redis_client(settings, socket_timeout_s=2)
    try:
        await client.set("cvco:probe", "1")
        assert str((await client.client_info())["db"]) == "5"
        assert (await client.info("server"))["tcp_port"] == redis.primary.port
    finally:
        await client.aclose()


def test_the_redis_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "CVCO_REDIS_SENTINELS": "sentinel-1:26379, [::1]:26380",
        "CVCO_REDIS_SENTINEL_MASTER": "shop",
        "CVCO_REDIS_MIN_REPLICAS": "1",
        "CVCO_STREAM_RETENTION_S": "86400",
    }.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.redis_sentinels == [("sentinel-1", 26379), ("::1", 26380)]
    assert (settings.redis_sentinel_master, settings.redis_min_replicas) == ("shop", 1)
    assert settings.stream_retention_s == 86400
