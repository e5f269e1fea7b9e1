"""`POST /forms` on the receiver (through `create_app`) and on a bare application."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from html.parser import HTMLParser
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from redis.asyncio import Redis

from ingest.app import create_app
from ingest.forms_api import FORMS_PATH, add_form_routes
from ingest.signature import verify_signature
from ingest.trans_ids import COUNTER_PREFIX
from schemas.settings import Settings
from tests.conftest import SHOP_ID
from workers.sessions import SESSIONS_KEY

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ORDER = {"shop_id": SHOP_ID, "amount": 2990, "order_id": "CMD-42", "mode": "TEST"}


def bare_app(settings: Settings) -> web.Application:
    app = web.Application()
    add_form_routes(app, settings)
    return app


AppFactory = Callable[[Settings], web.Application]


@pytest.fixture(params=[create_app, bare_app], ids=["receiver", "bare"])
def app_factory(request: pytest.FixtureRequest) -> AppFactory:
    factory: AppFactory = request.param
    return factory


@pytest.fixture
async def client(
    settings: Settings, redis: Redis, app_factory: AppFactory
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = app_factory(settings.model_copy(update={"api_token": SecretStr(TOKEN)}))
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


async def test_a_form_is_issued_as_fields_action_and_html(
    client: TestClient[web.Request, web.Application], settings: Settings, redis: Redis
) -> None:
    body = ORDER | {
        "customer": {"first_name": "Jeanne", "status": "PRIVATE"},
        "products": [{"label": "Séjour", "amount": 2990, "qty": 1, "type": "TRAVEL"}],
        "ext_info": {"Nb_Adults": "2"},
        "capture_delay": 9,
    }
    response = await client.post(FORMS_PATH, json=body, headers=AUTH)
    assert response.status == 200, await response.text()
    answer: dict[str, Any] = await response.json()
    fields = answer["fields"]
    assert answer["action"] == settings.platform_url
    assert fields["vads_order_id"] == "CMD-42"
    assert fields["vads_cust_first_name"] == "Jeanne"
    assert fields["vads_product_label0"] == "Séjour"
    assert fields["vads_ext_info_Nb_Adults"] == "2"
    assert fields["vads_capture_delay"] == "3"
    assert answer["warnings"] == [
        "vads_capture_delay=9: lowered to 3, the longest Chèque-Vacances Connect allows"
    ]
    assert verify_signature(fields, fields["signature"], settings.shops[SHOP_ID]) == "valid"
    assert answer["html"].startswith("<!DOCTYPE html>")
    assert answer["form_html"] in answer["html"]
    HTMLParser().feed(answer["html"])
    assert await redis.zcard(SESSIONS_KEY) == 1


async def test_auto_submit_asks_for_a_self_posting_page(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.post(FORMS_PATH, json=ORDER | {"auto_submit": True}, headers=AUTH)
    assert ".submit();</script>" in (await response.json())["html"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"}],
    ids=["missing", "wrong", "no-scheme", "basic"],
)
async def test_a_missing_or_wrong_token_is_401_in_one_line(
    client: TestClient[web.Request, web.Application], redis: Redis, headers: dict[str, str]
) -> None:
    response = await client.post(FORMS_PATH, json=ORDER, headers=headers)
    assert response.status == 401
    assert await response.text() == "missing or wrong bearer token"
    assert await redis.zcard(SESSIONS_KEY) == 0


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"amount": 1999}, "vads_amount='1999': at least 2000 cents for Chèque-Vacances Connect"),
        ({"order_id": "CMD<1>"}, "vads_order_id='CMD<1>': format ans..64"),
        ({"products": [{"label": "A", "amount": 100, "type": "TRAVEL"}]}, "vads_amount='2990': cart lines"),
        (
            {"validation_mode": "1"},
            "vads_validation_mode='1': Chèque-Vacances Connect has no manual validation",
        ),
        ({"shop_id": "87654321"}, "vads_site_id='87654321': not a shop of CVCO_SHOPS"),
        ({"amount": "lots"}, "amount: Input should be a valid integer"),
        ({"colour": "blue"}, "colour: Extra inputs are not permitted"),
    ],
)
async def test_a_broken_rule_is_422_with_the_reason(
    client: TestClient[web.Request, web.Application], redis: Redis, changes: dict[str, Any], reason: str
) -> None:
    response = await client.post(FORMS_PATH, json=ORDER | changes, headers=AUTH)
    assert response.status == 422
    text = await response.text()
    assert text.startswith(reason), text
    assert "\n" not in text
    assert await redis.zcard(SESSIONS_KEY) == 0


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"\xff\xfe"])
async def test_a_body_that_is_not_a_json_object_is_400(
    client: TestClient[web.Request, web.Application], body: bytes
) -> None:
    response = await client.post(FORMS_PATH, data=body, headers=AUTH | {"Content-Type": "application/json"})
    assert response.status == 400
    assert "\n" not in await response.text()


@pytest.mark.parametrize("token", [None, ""])
async def test_without_a_token_configured_forms_is_404(
    settings: Settings, redis: Redis, app_factory: AppFactory, token: str | None
) -> None:
    app = app_factory(
        settings.model_copy(update={"api_token": SecretStr(token) if token is not None else None})
    )
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        response = await test_client.post(FORMS_PATH, json=ORDER, headers={"Authorization": "Bearer "})
        assert response.status == 404


async def _raw_post(port: int, headers: bytes, body: bytes) -> tuple[int, bytes]:
    """POST /forms with header bytes aiohttp's client would not send (not UTF-8); status and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /forms HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
        + headers
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )
    answer = await reader.read()
    writer.close()
    head, _, text = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), text


@pytest.mark.parametrize(
    ("headers", "body", "status", "reason"),
    [
        (b"Authorization: Bearer \xff\xfe\r\n", json.dumps(ORDER).encode(), 401, "bearer token"),
        (b"Authorization: \xe9t\xe9 " + TOKEN.encode() + b"\r\n", b"{}", 401, "bearer token"),
        (b"", b"[" * 30_000 + b"]" * 30_000, 400, "nested"),
        (b"", b'{"shop_id": "12345678", "amount": ' + b"9" * 5000 + b"}", 400, "JSON"),
        (b"", json.dumps(ORDER | {"order_id": "\ud800"}).encode(), 400, "surrogate"),
        (b"", json.dumps(ORDER | {"customer": {"city": "\udfff"}}).encode(), 400, "surrogate"),
        (b"", json.dumps(ORDER | {"amount": 100}).encode(), 422, "vads_amount"),
        (b"", json.dumps(ORDER | {"order_id": "x" * 100}).encode(), 422, "vads_order_id"),
    ],
)
async def test_a_hostile_request_is_refused_in_one_line_and_spends_no_trans_id(
    settings: Settings, redis: Redis, headers: bytes, body: bytes, status: int, reason: str
) -> None:
    """Non-UTF-8 Authorization, deep nesting, a 5,000-digit integer, a lone surrogate, a broken rule:
    401, 400 or 422 with a one-line reason, never 500, and no trans_id counter touched."""
    auth = headers or f"Authorization: Bearer {TOKEN}\r\n".encode()
    app = create_app(settings.model_copy(update={"api_token": SecretStr(TOKEN)}))
    async with TestServer(app, host="127.0.0.1") as server:
        assert server.port is not None
        got, text = await _raw_post(server.port, auth, body)
    assert got == status, text
    assert reason.encode() in text and b"\n" not in text.strip()
    assert await redis.keys(COUNTER_PREFIX + "*") == []
    assert await redis.zcard(SESSIONS_KEY) == 0
