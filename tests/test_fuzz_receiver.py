"""Fuzzing `POST /ipn` in-process: whatever the body, the receiver answers one of the contract's codes.

About 10,000 generated bodies in total go through a real aiohttp server on loopback backed by the test
Redis: random bytes, broken encodings, duplicated fields, huge values, missing fields and valid
signatures over absurd content. Never a crash, never a 5xx while Redis is up, and nothing is queued
unless the answer is 200.
"""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from redis.asyncio import Redis

from ingest.checks import NOTIFICATION_FIELDS
from ingest.signature import compute_signature, sign_fields
from schemas.settings import Settings, ShopConfig
from tests.conftest import SHOP_ID, free_port
from tests.reliability.inprocess import CONTRACT_CODES, FORM, ReceiverClient, receiver_client
from tests.reliability.notifications import accepted_payment

MAX_BODY = 64 * 1024
LIVE_REDIS_CODES = CONTRACT_CODES - {503}
FUZZ = examples(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)


@pytest.fixture
async def client(settings: Settings, redis: Redis) -> AsyncIterator[ReceiverClient]:
    async with receiver_client(settings) as test_client:
        yield test_client


async def _post(client: ReceiverClient, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    # a BytesIO body: aiohttp warns that large raw bytes would block the loop
    response = await client.post("/ipn", data=io.BytesIO(body), headers=headers)
    return response.status, await response.text()


async def _queued(redis: Redis, settings: Settings) -> int:
    count: int = await redis.zcard(settings.queue_name)
    return count


def _assert_one_line_answer(status: int, text: str) -> None:
    assert status in LIVE_REDIS_CODES, (status, text)
    assert "\n" not in text.strip() and "<" not in text, text


# Text that breaks naive parsers: separators, escapes, controls, non-BMP characters.
nasty_text = st.text(
    alphabet=st.one_of(
        st.sampled_from("&=+%;# \x00\r\n\t\u00e9\u20ac\U0001f600"), st.characters(codec="utf-8")
    ),
    max_size=200,
)


@examples(FUZZ, max_examples=2500)
@given(body=st.binary(max_size=4096))
async def test_random_bytes_get_a_contract_code_and_queue_nothing(
    client: ReceiverClient, redis: Redis, settings: Settings, body: bytes
) -> None:
    """Any byte string as a form body: one of 400/401/403, a one-line answer, no job queued."""
    before = await _queued(redis, settings)
    status, text = await _post(client, body, FORM)
    _assert_one_line_answer(status, text)
    assert status != 200
    assert await _queued(redis, settings) == before


@st.composite
def mutated_notifications(draw: st.DrawFn) -> tuple[dict[str, str], str]:
    """A notification with fields removed, added or replaced by absurd values; signed, forged or unsigned."""
    fields = accepted_payment(draw(st.integers(0, 10**6)), SHOP_ID, _SHOP, salt="fuzz")
    del fields["signature"]
    for name in draw(st.lists(st.sampled_from(sorted(fields)), max_size=4, unique=True)):
        del fields[name]
    extra = draw(st.dictionaries(st.text(max_size=30).map(lambda s: "vads_" + s), nasty_text, max_size=6))
    fields.update(extra)
    if draw(st.booleans()):
        fields["vads_ctx_mode"] = draw(st.sampled_from(["TEST", "PRODUCTION", "test", "", "DEV"]))
    if draw(st.integers(0, 9)) == 0:
        fields["vads_site_id"] = draw(st.sampled_from(["87654321", "", "1234567", "12345678 "]))
    how = draw(st.sampled_from(["valid", "forged", "absent"]))
    return fields, how


_SHOP = ShopConfig.model_validate(
    {"test_key": "1122334455667788", "production_key": "8877665544332211", "modes": ["TEST", "PRODUCTION"]}
)


def _signed_body(fields: dict[str, str], how: str, shop: ShopConfig) -> bytes:
    """Add the signature `how` asks for (valid, forged with another key, or none) and encode."""
    mode = fields.get("vads_ctx_mode", "")
    if how != "absent":
        fields["signature"] = sign_fields(fields, shop, mode if mode in shop.modes else "TEST")
    if how == "forged":
        fields["signature"] = compute_signature(fields, "not-the-shop-key", "HMAC-SHA-256")
    return urlencode(fields).encode("utf-8")


def _expected_status(fields: dict[str, str], how: str, shop: ShopConfig) -> int:
    if how == "absent" or "vads_site_id" not in fields:
        return 400
    if fields["vads_site_id"] != SHOP_ID or fields.get("vads_ctx_mode") not in shop.modes:
        return 403
    if how != "valid":
        return 401
    return 200 if all(name in fields for name in NOTIFICATION_FIELDS) else 400


@examples(FUZZ, max_examples=4000)
@given(case=mutated_notifications())
async def test_mutated_notifications_get_exactly_the_contracts_answer(
    client: ReceiverClient,
    redis: Redis,
    settings: Settings,
    shop: ShopConfig,
    case: tuple[dict[str, str], str],
) -> None:
    """Valid signature over absurd or missing content: 200 and queued; forged: 401; unsigned, or signed
    without a notification's own fields: 400.

    Unknown shop or mode: 403. Only a 200 adds a job (a repeated body adds none).
    """
    fields, how = case
    body = _signed_body(fields, how, shop)
    before = await _queued(redis, settings)
    status, text = await _post(client, body, FORM)
    _assert_one_line_answer(status, text)
    expected = 413 if len(body) > MAX_BODY else _expected_status(fields, how, shop)
    assert status == expected, (status, text)
    assert await _queued(redis, settings) - before <= (1 if status == 200 else 0)


@examples(FUZZ, max_examples=1000)
@given(
    name=st.sampled_from(["vads_amount", "vads_trans_id", "signature", "vads_site_id", "vads_order_id"]),
    value=nasty_text,
    index=st.integers(0, 10**6),
)
async def test_a_duplicated_field_is_refused_with_400(
    client: ReceiverClient,
    redis: Redis,
    settings: Settings,
    shop: ShopConfig,
    name: str,
    value: str,
    index: int,
) -> None:
    """A field given twice is ambiguous (which value was signed?): 400, nothing queued."""
    fields = accepted_payment(index, SHOP_ID, shop, salt="dup")
    body = urlencode(fields) + "&" + urlencode({name: value})
    status, text = await _post(client, body.encode("utf-8"), FORM)
    _assert_one_line_answer(status, text)
    assert status == 400
    assert await _queued(redis, settings) == 0


@examples(FUZZ, max_examples=1000)
@given(
    broken=st.sampled_from([b"%ff", b"%c3%28", b"%e2%82", b"%80", b"\xff", b"\xc3", b"%ed%a0%80"]),
    where=st.sampled_from(["value", "name"]),
    index=st.integers(0, 10**6),
)
async def test_a_body_that_is_not_utf8_is_refused_with_400(
    client: ReceiverClient,
    redis: Redis,
    settings: Settings,
    shop: ShopConfig,
    broken: bytes,
    where: str,
    index: int,
) -> None:
    """Invalid UTF-8, raw or %-encoded, in a name or a value: 400, nothing queued."""
    body = urlencode(accepted_payment(index, SHOP_ID, shop, salt="enc")).encode()
    extra = b"vads_ext_info_x=" + broken if where == "value" else b"vads_" + broken + b"=1"
    status, text = await _post(client, body + b"&" + extra, FORM)
    _assert_one_line_answer(status, text)
    assert status == 400
    assert await _queued(redis, settings) == 0


@examples(FUZZ, max_examples=500)
@given(
    content_type=st.one_of(
        st.sampled_from(["application/json", "text/plain", "multipart/form-data; boundary=x", ""]),
        st.sampled_from(["latin-1", "iso-8859-1", "utf-16", "ascii-x"]).map(
            lambda c: "application/x-www-form-urlencoded; charset=" + c
        ),
        st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=40),
    ),
    index=st.integers(0, 10**6),
)
# found by this test: aiohttp raises IndexError parsing a parameter name ending in "*" with no value
@example(content_type="text/plain; q*", index=0)
async def test_a_valid_notification_with_a_wrong_content_type_is_refused_with_400(
    client: ReceiverClient,
    redis: Redis,
    settings: Settings,
    shop: ShopConfig,
    content_type: str,
    index: int,
) -> None:
    """Only form-urlencoded UTF-8 is a notification: anything else is 400 and nothing is queued."""
    body = urlencode(accepted_payment(index, SHOP_ID, shop, salt="ct")).encode()
    status, text = await _post(client, body, {"Content-Type": content_type})
    _assert_one_line_answer(status, text)
    normalized = content_type.split(";")[0].strip().lower()
    if normalized == "application/x-www-form-urlencoded" and "charset" not in content_type.lower():
        assert status == 200
    else:
        assert status == 400
        assert await _queued(redis, settings) == 0


@examples(FUZZ, max_examples=100)
@given(
    size=st.integers(MAX_BODY + 1, 1024 * 1024),
    name=st.sampled_from(["vads_order_info", "vads_ext_info_blob", "signature"]),
)
async def test_a_body_over_64_kib_is_refused_with_413(
    client: ReceiverClient,
    redis: Redis,
    settings: Settings,
    shop: ShopConfig,
    size: int,
    name: str,
) -> None:
    """A huge value, signed or not, never reaches the parser: 413, nothing queued."""
    fields = accepted_payment(size, SHOP_ID, shop, salt="huge")
    fields[name] = "A" * size
    if name != "signature":
        fields["signature"] = sign_fields(fields, shop, "TEST")
    before = await _queued(redis, settings)
    status, text = await _post(client, urlencode(fields, quote_via=quote).encode(), FORM)
    _assert_one_line_answer(status, text)
    assert status == 413
    assert await _queued(redis, settings) == before


@pytest.fixture
async def client_without_redis(settings: Settings) -> AsyncIterator[ReceiverClient]:
    """A receiver whose Redis is a closed port on loopback: every write fails at once."""
    dead = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    async with receiver_client(dead) as test_client:
        yield test_client


@examples(FUZZ, max_examples=900)
@given(case=mutated_notifications())
async def test_with_redis_dead_nothing_is_claimed_and_only_503_is_a_5xx(
    client_without_redis: ReceiverClient, shop: ShopConfig, case: tuple[dict[str, str], str]
) -> None:
    """Redis down: what would be a 200 is a fast 503 (never a 200, never another 5xx); refusals stay refusals."""
    fields, how = case
    body = _signed_body(fields, how, shop)
    started = time.monotonic()
    status, text = await _post(client_without_redis, body, FORM)
    assert status in CONTRACT_CODES and "\n" not in text.strip()
    expected = 413 if len(body) > MAX_BODY else _expected_status(fields, how, shop)
    assert status == (503 if expected == 200 else expected), (status, text)
    assert time.monotonic() - started < 2.5
