"""Shared fixtures: a real Redis (flushed per test), a real SMTP server, a known test shop."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from arq.connections import ArqRedis
from pydantic import SecretStr
from redis import Redis as SyncRedis
from redis.asyncio import ConnectionPool, Redis
from redis.exceptions import RedisError

from schemas.job import dumps, loads
from schemas.settings import Settings, ShopConfig

TEST_REDIS_URL = os.environ.get("CVCO_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
SHOP_ID = "12345678"
TEST_KEY = "1122334455667788"
PRODUCTION_KEY = "8877665544332211"


SUITE_MARK = "cvco-ipn:test-suite-database"
"""Left in the test database when a run ends: the next run knows the data there is its own."""


def pytest_sessionstart(session: pytest.Session) -> None:
    """Run only on a database that is empty or the suite's own: every test flushes it."""
    client = SyncRedis.from_url(TEST_REDIS_URL)
    try:
        keys = client.dbsize()
        ours = bool(client.exists(SUITE_MARK))
    except RedisError as e:
        pytest.exit(f"no Redis for the tests at {TEST_REDIS_URL} (CVCO_TEST_REDIS_URL): {e}", returncode=2)
    finally:
        client.close()
    if keys and not ours:
        pytest.exit(
            f"{TEST_REDIS_URL} holds {keys} keys the test suite did not leave, and every test flushes it: point "
            "CVCO_TEST_REDIS_URL at an empty database (or, if an interrupted run left them, empty it with "
            "redis-cli -u URL flushdb)",
            returncode=2,
        )


def pytest_sessionfinish(session: pytest.Session) -> None:
    with SyncRedis.from_url(TEST_REDIS_URL) as client:
        client.set(SUITE_MARK, "every test flushes this database")


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never answers (a peer hung mid-way). Yields its port."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.fixture
def shop() -> ShopConfig:
    return ShopConfig(
        test_key=SecretStr(TEST_KEY),
        production_key=SecretStr(PRODUCTION_KEY),
        algorithms=("HMAC-SHA-256", "SHA-1"),
        modes=("TEST", "PRODUCTION"),
    )


@pytest.fixture
def settings(shop: ShopConfig) -> Settings:
    """Settings pointing at the test Redis, with one shop that accepts both modes and algorithms."""
    return Settings(redis_url=TEST_REDIS_URL, shops={SHOP_ID: shop}, stream="cvco:test-events")


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    """The test database of the machine's Redis, empty at the start of each test."""
    client = Redis.from_url(TEST_REDIS_URL)
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


@dataclass
class MailBox:
    """What the in-process SMTP server received."""

    messages: list[Envelope] = field(default_factory=list)

    async def handle_DATA(
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:  # aiosmtpd's hook name
        self.messages.append(envelope)
        return "250 OK"


@dataclass
class SmtpServer:
    host: str
    port: int
    mailbox: MailBox

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server (aiosmtpd) on a free local port."""
    mailbox = MailBox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield SmtpServer("127.0.0.1", port, mailbox)
    controller.stop()


@pytest.fixture
async def pool(redis: Redis) -> AsyncIterator[ArqRedis]:
    """An arq client on the test database with the project's JSON job serializer, as the receiver uses."""
    arq = ArqRedis(ConnectionPool.from_url(TEST_REDIS_URL), job_serializer=dumps, job_deserializer=loads)
    yield arq
    await arq.aclose(close_connection_pool=True)
