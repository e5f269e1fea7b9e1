"""The receiver in-process (aiohttp `TestServer` on `create_app(settings)`), for fuzz and security tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ingest.app import create_app
from schemas.settings import Settings

ReceiverClient = TestClient[web.Request, web.Application]

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
CONTRACT_CODES = frozenset({200, 400, 401, 403, 413, 503})
"""Every answer `POST /ipn` may give, per the contract."""


@asynccontextmanager
async def receiver_client(settings: Settings) -> AsyncIterator[ReceiverClient]:
    """A client talking over loopback to a fresh receiver built from `settings`."""
    client: ReceiverClient = TestClient(TestServer(create_app(settings), host="127.0.0.1"))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()
