"""What POST /ipn refuses, with which status, and that a refusal never queues anything."""

from __future__ import annotations

from datetime import UTC, datetime
from ipaddress import ip_network
from urllib.parse import urlencode

import pytest
from multidict import CIMultiDict
from redis.asyncio import Redis

from ingest.rejected_store import (
    FORENSICS_STREAM,
    INDEX_PREFIX,
    REJECTED_PREFIX,
    RejectedRequest,
    keep_rejected,
    list_rejected,
)
from ingest.rejections import KeptReason
from schemas.settings import Settings, ShopConfig
from tests.conftest import SHOP_ID
from tests.test_receiver import FORM, notification, receiver, signed, stored_job


async def assert_nothing_queued(redis: Redis, settings: Settings) -> None:
    assert await redis.zcard(settings.queue_name) == 0
    assert await redis.keys("arq:job:*") == []


def padded_body(fields: dict[str, str], size: int) -> str:
    """The signed body grown to exactly `size` bytes by an unsigned (non-`vads_`) field."""
    body = urlencode(fields) + "&pad="
    return body + "x" * (size - len(body))


@pytest.mark.parametrize(
    ("body", "headers", "reason"),
    [
        (b"vads_site_id=12345678&signature=x", {"Content-Type": "text/plain"}, "content type"),
        (b'{"vads_site_id": "12345678"}', {"Content-Type": "application/json"}, "content type"),
        (b"vads_site_id=12345678&signature=x", {"Content-Type": "text/plain; q*"}, "content type"),
        (
            b"vads_site_id=12345678&signature=x",
            {"Content-Type": "application/x-www-form-urlencoded; charset=ISO-8859-1"},
            "charset",
        ),
        ("vads_site_id=12345678&signature=x&vads_x=été".encode("latin-1"), FORM, "not UTF-8"),
        (b"vads_site_id=12345678&signature=x&vads_x=%E9", FORM, "not UTF-8"),
        (b"vads_site_id=12345678&vads_ctx_mode=TEST", FORM, "no signature"),
        (b"vads_ctx_mode=TEST&signature=x", FORM, "no vads_site_id"),
        (b"vads_site_id=12345678&signature=x&signature=y", FORM, "more than once"),
        (b"", FORM, "no signature"),
    ],
)
async def test_not_a_notification_is_400_with_a_one_line_reason(
    settings: Settings, redis: Redis, body: bytes, headers: dict[str, str], reason: str
) -> None:
    """Wrong content type or charset, non-UTF-8, no signature, no vads_site_id, a repeated field: 400."""
    async with receiver(settings) as client:
        response = await client.post("/ipn", data=body, headers=headers)
        text = await response.text()
    assert response.status == 400
    assert reason in text
    assert "\n" not in text and "<" not in text
    assert response.content_type == "text/plain"
    await assert_nothing_queued(redis, settings)


async def test_a_duplicated_signed_field_is_400_even_with_a_valid_signature(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    """Two values for one field is refused before any signature is checked."""
    body = urlencode(signed(notification(), shop)) + "&vads_amount=1"
    async with receiver(settings) as client:
        response = await client.post("/ipn", data=body, headers=FORM)
    assert response.status == 400
    await assert_nothing_queued(redis, settings)


async def test_body_over_64_kib_is_413(settings: Settings, shop: ShopConfig, redis: Redis) -> None:
    """A body of 64 KiB + 1 byte is refused with 413 and a one-line reason, even when well signed."""
    body = padded_body(signed(notification(), shop), 64 * 1024 + 1)
    assert len(body) == 64 * 1024 + 1
    async with receiver(settings) as client:
        response = await client.post("/ipn", data=body, headers=FORM)
        text = await response.text()
    assert (response.status, text) == (413, "body over 64 KiB")
    await assert_nothing_queued(redis, settings)


async def test_body_of_exactly_64_kib_is_accepted(settings: Settings, shop: ShopConfig, redis: Redis) -> None:
    """The limit is inclusive: 65,536 bytes is still a notification."""
    body = padded_body(signed(notification(), shop), 64 * 1024)
    assert len(body) == 64 * 1024
    async with receiver(settings) as client:
        response = await client.post("/ipn", data=body, headers=FORM)
    assert response.status == 200


async def test_unknown_shop_is_403(settings: Settings, shop: ShopConfig, redis: Redis) -> None:
    """A vads_site_id the deployment has no key for is refused with 403, even if signed with a known key."""
    fields = signed(notification(vads_site_id="87654321"), shop)
    async with receiver(settings) as client:
        response = await client.post("/ipn", data=urlencode(fields), headers=FORM)
        assert (response.status, await response.text()) == (403, "unknown vads_site_id")
    await assert_nothing_queued(redis, settings)


@pytest.mark.parametrize("mode", ["TEST", "", "DEMO"])
async def test_mode_the_shop_does_not_accept_is_403(
    settings: Settings, shop: ShopConfig, redis: Redis, mode: str
) -> None:
    """A production-only deployment refuses TEST notifications (and unknown modes) with 403."""
    production_only = ShopConfig(production_key=shop.production_key, modes=("PRODUCTION",))
    settings = settings.model_copy(update={"shops": {SHOP_ID: production_only}})
    fields = signed(notification(), shop) | {"vads_ctx_mode": mode}
    async with receiver(settings) as client:
        response = await client.post("/ipn", data=urlencode(fields), headers=FORM)
        assert response.status == 403
        assert "vads_ctx_mode" in await response.text()
    await assert_nothing_queued(redis, settings)


async def test_signature_mismatch_is_401_queues_nothing_and_keeps_the_raw_body(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    """A tampered amount fails verification: 401, no job, and the exact body is kept with the rejected requests."""
    fields = signed(notification(), shop) | {"vads_amount": "1"}
    body = urlencode(fields).encode("ascii")
    async with receiver(settings) as client:
        response = await client.post("/ipn", data=body, headers=FORM)
        assert (response.status, await response.text()) == (401, "signature mismatch")
        metrics = await (await client.get("/metrics")).text()
    await assert_nothing_queued(redis, settings)
    [kept] = await list_rejected(redis)
    assert kept.body == body
    assert (kept.reason, kept.status, kept.message) == ("signature", 401, "signature mismatch")
    assert (kept.shop_id, kept.order_id, kept.client_ip) == (SHOP_ID, "order-42", "127.0.0.1")
    assert kept.id == response.headers["X-Request-Id"]
    assert kept.received_at.tzinfo is not None
    assert await redis.xlen(FORENSICS_STREAM) == 1  # what the signature-burst alert counts
    assert f'cvco_ipn_signature_failures_total{{shop="{SHOP_ID}"}} 1.0' in metrics
    assert 'cvco_ipn_requests_total{outcome="bad_signature"} 1.0' in metrics


def _rejected(request_id: str, reason: KeptReason = "signature") -> RejectedRequest:
    return RejectedRequest(
        reason=reason,
        status=401,
        message="signature mismatch",
        received_at=datetime.now(UTC),
        client_ip="192.0.2.1",
        request_id=request_id,
        shop_id=SHOP_ID,
        order_id="",
        body=b"x",
    )


async def test_rejected_store_is_capped_per_reason(redis: Redis) -> None:
    """250 bad signatures with a cap of 10 keep the 10 newest, and never push out another reason's entry."""
    assert await keep_rejected(redis, _rejected("shop-0", "shop"), maxlen=10, max_age_s=3600, timeout_s=2)
    for n in range(250):
        assert await keep_rejected(redis, _rejected(f"sig-{n}"), maxlen=10, max_age_s=3600, timeout_s=2)
    kept = await list_rejected(redis)
    assert [entry.id for entry in kept if entry.reason == "signature"] == [
        f"sig-{n}" for n in range(240, 250)
    ]
    assert [entry.id for entry in kept if entry.reason == "shop"] == ["shop-0"]
    assert len(await redis.keys(REJECTED_PREFIX + "sig-*")) == 10


async def test_rejected_requests_expire_even_when_no_new_refusal_arrives(redis: Redis) -> None:
    """Each kept request and its index carry the max age as a TTL: the store empties itself."""
    await keep_rejected(redis, _rejected("old"), maxlen=10, max_age_s=60, timeout_s=2)
    assert 0 < await redis.pttl(REJECTED_PREFIX + "old") <= 60_000
    assert 0 < await redis.pttl(INDEX_PREFIX + "signature") <= 60_000
    # the index entries older than the max age go when the next one is kept
    await redis.zadd(INDEX_PREFIX + "signature", {"ancient": 1})
    await keep_rejected(redis, _rejected("new"), maxlen=10, max_age_s=60, timeout_s=2)
    assert set(await redis.zrange(INDEX_PREFIX + "signature", 0, -1)) == {b"old", b"new"}


async def test_address_outside_the_allowlist_is_403(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    """With an allowlist set, a well-signed notification from elsewhere is refused with 403."""
    settings = settings.model_copy(update={"ipn_allowlist": [ip_network("192.0.2.0/24")]})
    async with receiver(settings) as client:
        response = await client.post("/ipn", data=urlencode(signed(notification(), shop)), headers=FORM)
        assert (response.status, await response.text()) == (403, "address not allowed")
    await assert_nothing_queued(redis, settings)


async def test_address_inside_the_allowlist_is_accepted(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    """The allowlist admits the addresses it names."""
    settings = settings.model_copy(update={"ipn_allowlist": [ip_network("127.0.0.0/8")]})
    async with receiver(settings) as client:
        response = await client.post("/ipn", data=urlencode(signed(notification(), shop)), headers=FORM)
        assert response.status == 200


async def test_forwarded_for_is_believed_only_from_a_trusted_proxy(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    """Behind trusted proxies the right-most untrusted X-Forwarded-For address is the client, allowlist included."""
    settings = settings.model_copy(
        update={
            "trusted_proxies": [ip_network("127.0.0.1/32"), ip_network("10.0.0.0/8")],
            "ipn_allowlist": [ip_network("192.0.2.0/24")],
        }
    )
    fields = signed(notification(), shop)
    # the client forged the left-most entry; the proxies appended the real address and their own
    headers = FORM | {"X-Forwarded-For": "198.51.100.66, 192.0.2.7, 10.1.2.3"}
    async with receiver(settings) as client:
        response = await client.post("/ipn", data=urlencode(fields), headers=headers)
        assert response.status == 200
    _, queued = await stored_job(redis, fields)
    assert queued.client_ip == "192.0.2.7"


async def test_a_forged_first_forwarded_for_line_does_not_pass_the_allowlist(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    """Behind a proxy that adds its own X-Forwarded-For line, the client's forged line is not believed."""
    settings = settings.model_copy(
        update={
            "trusted_proxies": [ip_network("127.0.0.1/32")],
            "ipn_allowlist": [ip_network("192.0.2.0/24")],
        }
    )
    fields = signed(notification(), shop)
    forged = CIMultiDict(FORM)
    forged.add("X-Forwarded-For", "192.0.2.7")  # written by the client
    forged.add("X-Forwarded-For", "198.51.100.66")  # added by the proxy: the real client
    async with receiver(settings) as client:
        response = await client.post("/ipn", data=urlencode(fields), headers=forged)
        assert (response.status, await response.text()) == (403, "address not allowed")
    await assert_nothing_queued(redis, settings)


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    """Without trusted proxies, a client cannot claim an allowlisted address with X-Forwarded-For."""
    settings = settings.model_copy(update={"ipn_allowlist": [ip_network("192.0.2.0/24")]})
    headers = FORM | {"X-Forwarded-For": "192.0.2.7"}
    async with receiver(settings) as client:
        response = await client.post("/ipn", data=urlencode(signed(notification(), shop)), headers=headers)
        assert response.status == 403
    await assert_nothing_queued(redis, settings)


@pytest.mark.parametrize(
    ("method", "path", "status"), [("GET", "/ipn", 405), ("GET", "/", 404), ("POST", "/x", 404)]
)
async def test_other_routes_answer_one_line_plain_text(
    settings: Settings, redis: Redis, method: str, path: str, status: int
) -> None:
    """aiohttp's own refusals are one line of plain text too, never a page or a redirect."""
    async with receiver(settings) as client:
        response = await client.request(method, path, allow_redirects=False)
        text = await response.text()
    assert response.status == status
    assert response.content_type == "text/plain"
    assert "\n" not in text.strip() and "<" not in text
