"""The Redis client every process uses, built from `Settings` by one function: `redis_client`.

The URL (`redis://`, `rediss://`, `unix://`, with an ACL user and password) names the server; with
`CVCO_REDIS_SENTINELS` the primary is asked of Sentinel instead, on every new connection, and the URL
gives the database, the credentials and TLS. A connection that finds itself on a demoted primary is
closed (redis-py raises ConnectionError on READONLY), so the next one goes to the new primary: a
failover is followed without a restart. Commands are packed in C (hiredis) on every transport.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any
from urllib.parse import urlsplit

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import (
    Connection,
    ConnectionPool,
    SSLConnection,
    UnixDomainSocketConnection,
    parse_url,
)
from redis.asyncio.sentinel import (
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)
from redis.exceptions import AuthenticationError, AuthenticationWrongNumberOfArgsError, RedisError
from redis.typing import EncodableT

from schemas.settings import Settings


class _HiredisPacking:
    """Packs commands with hiredis (C) instead of Python.

    The job writer's one EVAL per batch carries five values per job (two keys, three arguments): redis-py's Python packer cost
    several times hiredis's on a batch (figures in the README). Same RESP bytes for what is sent here.
    """

    def pack_command(self, *args: EncodableT) -> list[bytes]:
        command = args[0]
        if isinstance(command, str) and " " in command:
            # redis-py names some commands in one string ("CLIENT SETINFO"): they go as separate words
            args = (*command.split(), *args[1:])
        return [hiredis.pack_command(args)]  # type: ignore[arg-type]  # hiredis's stub omits bytearray, which it packs too


class HiredisPackingConnection(_HiredisPacking, Connection):
    """redis-py's asyncio TCP connection, packing in C."""


class _HiredisSSLConnection(_HiredisPacking, SSLConnection):
    pass


class _HiredisUnixConnection(_HiredisPacking, UnixDomainSocketConnection):
    pass


class _HiredisSentinelConnection(_HiredisPacking, SentinelManagedConnection):
    pass


class _HiredisSentinelSSLConnection(_HiredisPacking, SentinelManagedSSLConnection):
    pass


class _SentinelPool(SentinelConnectionPool):
    """redis-py's, closing the connections to the Sentinels too when the client closes."""

    async def disconnect(self, inuse_connections: bool = True) -> None:
        await super().disconnect(inuse_connections)
        if inuse_connections:  # the client closing, not a failover dropping idle connections
            for sentinel in self.sentinel_manager.sentinels:
                await sentinel.connection_pool.disconnect()


def redis_client(
    settings: Settings,
    *,
    socket_timeout_s: float | None,
    client_class: type[Redis] = Redis,
    **options: Any,
) -> Redis:
    """A client of `client_class` (Redis, or arq's ArqRedis) on the deployment's primary.

    `socket_timeout_s` bounds each command (None: unbounded, for callers that bound calls themselves);
    connecting is bounded by `CVCO_REDIS_TIMEOUT_S`. Nothing connects until the first command.
    """
    target: dict[str, Any] = dict(parse_url(settings.redis_url))
    transport = target.pop("connection_class", Connection)
    tls = transport is SSLConnection
    common: dict[str, Any] = {
        "socket_timeout": socket_timeout_s,
        "socket_connect_timeout": settings.redis_timeout_s,
        "retry_on_timeout": False,
        **options,
    }
    if tls and settings.redis_ca_file:
        common["ssl_ca_certs"] = settings.redis_ca_file
    if settings.redis_sentinels:
        for name in ("host", "port", "path"):
            target.pop(name, None)
        # sentinels take the timeouts and TLS of the URL, not its credentials (they have their own, if any)
        sentinel_options = {key: value for key, value in common.items() if key.startswith(("socket_", "ssl"))}
        sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis-py's sentinel module is untyped
            settings.redis_sentinels,
            sentinel_kwargs={**sentinel_options, "ssl": tls, "socket_timeout": settings.redis_timeout_s},
        )
        transport = _HiredisSentinelSSLConnection if tls else _HiredisSentinelConnection
        client = sentinel.master_for(
            settings.redis_sentinel_master,
            redis_class=client_class,
            connection_pool_class=_SentinelPool,
            connection_class=transport,
            **target,
            **common,
        )
        return client  # type: ignore[no-any-return]  # redis-py's sentinel module is untyped
    transport = {
        SSLConnection: _HiredisSSLConnection,
        UnixDomainSocketConnection: _HiredisUnixConnection,
    }.get(transport, HiredisPackingConnection)
    pool = ConnectionPool(connection_class=transport, **target, **common)
    return client_class.from_pool(pool)


def redis_address(settings: Settings) -> str:
    """Where Redis is, for messages: the URL's scheme, host and port (or the sentinels), never credentials."""
    parts = urlsplit(settings.redis_url)
    if settings.redis_sentinels:
        sentinels = ",".join(f"{host}:{port}" for host, port in settings.redis_sentinels)
        return f"{parts.scheme}:// primary {settings.redis_sentinel_master!r} of sentinels {sentinels}"
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"


class RedisRefusedCredentials(Exception):
    """Redis refused the user or password of `CVCO_REDIS_URL`: a bad configuration, not an outage."""


async def check_credentials(settings: Settings) -> None:
    """PING once; `RedisRefusedCredentials` when Redis refuses the credentials.

    Redis unreachable is no reason to refuse to start (the receiver answers 503 until it is back):
    only a refusal of the credentials is raised, with a reason that never holds the password.
    """
    client = redis_client(settings, socket_timeout_s=settings.redis_timeout_s)
    try:
        await client.ping()
    except (AuthenticationError, AuthenticationWrongNumberOfArgsError) as e:
        raise RedisRefusedCredentials(
            f"Redis at {redis_address(settings)} refused the credentials of CVCO_REDIS_URL "
            f"(authentication failed for user {target_user(settings)!r}: {e})"
        ) from None
    except (RedisError, OSError):
        pass  # unreachable or failing otherwise: the process starts and reports it as it runs
    finally:
        await client.aclose()


def exit_if_credentials_refused(settings: Settings) -> None:
    """At a process's start: credentials Redis refuses exit 2 with a one-line reason on stderr."""
    try:
        asyncio.run(check_credentials(settings))
    except RedisRefusedCredentials as e:
        sys.stderr.write(f"cvco-ipn: bad configuration: {e}\n")
        raise SystemExit(2) from None


def target_user(settings: Settings) -> str:
    """The ACL user the URL names (`default` when it names none)."""
    return urlsplit(settings.redis_url).username or "default"
