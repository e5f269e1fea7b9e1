"""Security of `POST /ipn` in-process: forged and replayed-with-changes notifications, modes, allowlist.

A refused notification never reaches the queue; the source-address allowlist believes `X-Forwarded-For`
only when the direct peer is a trusted proxy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from ingest.rejected_store import FORENSICS_STREAM
from ingest.signature import compute_signature, sign_fields
from schemas.settings import Settings, ShopConfig
from tests.conftest import PRODUCTION_KEY, SHOP_ID, TEST_KEY
from tests.reliability.inprocess import FORM, ReceiverClient, receiver_client
from tests.reliability.notifications import accepted_payment, form_body

PLATFORM_NETWORK = "203.0.113.0/24"
PLATFORM_ADDRESS = "203.0.113.10"
OUTSIDER_ADDRESS = "198.51.100.7"


@pytest.fixture
async def client(settings: Settings, redis: Redis) -> AsyncIterator[ReceiverClient]:
    async with receiver_client(settings) as test_client:
        yield test_client


async def _post(client: ReceiverClient, fields: dict[str, str], **headers: str) -> int:
    response = await client.post("/ipn", data=form_body(fields), headers={**FORM, **headers})
    await response.read()
    return response.status


async def _queued(redis: Redis, settings: Settings) -> int:
    count: int = await redis.zcard(settings.queue_name)
    return count


async def test_a_production_only_shop_refuses_a_test_notification_with_403(
    settings: Settings, redis: Redis
) -> None:
    """A shop configured for PRODUCTION only answers 403 to a TEST notification, even one signed with a
    TEST key it once had, and queues nothing; its PRODUCTION notification is accepted."""
    production_only = ShopConfig(
        test_key=SecretStr(TEST_KEY), production_key=SecretStr(PRODUCTION_KEY), modes=("PRODUCTION",)
    )
    locked = settings.model_copy(update={"shops": {SHOP_ID: production_only}})
    signer = ShopConfig(test_key=SecretStr(TEST_KEY), production_key=SecretStr(PRODUCTION_KEY))
    async with receiver_client(locked) as client:
        assert await _post(client, accepted_payment(1, SHOP_ID, signer, mode="TEST")) == 403
        assert await _queued(redis, locked) == 0
        assert await _post(client, accepted_payment(2, SHOP_ID, signer, mode="PRODUCTION")) == 200
        assert await _queued(redis, locked) == 1


async def test_a_notification_signed_with_the_wrong_key_is_refused_401_and_kept_for_forensics(
    client: ReceiverClient, redis: Redis, settings: Settings, shop: ShopConfig
) -> None:
    """Signed with another shop's key (or the PRODUCTION key for a TEST message): 401, nothing queued,
    the raw body kept with the rejected requests (bounded)."""
    fields = accepted_payment(1, SHOP_ID, shop)
    fields["signature"] = compute_signature(fields, "0000000000000000", "HMAC-SHA-256")
    assert await _post(client, fields) == 401
    fields["signature"] = compute_signature(fields, PRODUCTION_KEY, "HMAC-SHA-256")
    assert await _post(client, fields) == 401
    assert await _queued(redis, settings) == 0
    assert await redis.xlen(FORENSICS_STREAM) == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("vads_amount", "1"),
        ("vads_effective_amount", "999999"),
        ("vads_trans_status", "CAPTURED"),
        ("vads_order_id", "someone-elses-order"),
        ("vads_ext_info_added", "x"),
    ],
)
async def test_a_valid_notification_replayed_with_a_changed_field_is_refused_401(
    client: ReceiverClient, redis: Redis, settings: Settings, shop: ShopConfig, field: str, value: str
) -> None:
    """The genuine notification is accepted once; the same one replayed with an altered or added field
    is refused with 401 and adds no job."""
    genuine = accepted_payment(7, SHOP_ID, shop)
    assert await _post(client, genuine) == 200
    tampered = {**genuine, field: value}
    assert tampered != genuine
    assert await _post(client, tampered) == 401
    assert await _queued(redis, settings) == 1


async def test_a_sha1_signature_is_refused_when_the_shop_accepts_only_hmac(
    settings: Settings, redis: Redis, shop: ShopConfig
) -> None:
    """The legacy algorithm is accepted only when the shop lists it: no downgrade to SHA-1 otherwise."""
    hmac_only = ShopConfig(test_key=SecretStr(TEST_KEY), algorithms=("HMAC-SHA-256",), modes=("TEST",))
    strict = settings.model_copy(update={"shops": {SHOP_ID: hmac_only}})
    fields = accepted_payment(3, SHOP_ID, shop)
    fields["signature"] = compute_signature(fields, TEST_KEY, "SHA-1")
    async with receiver_client(strict) as client:
        assert await _post(client, fields) == 401
        fields["signature"] = sign_fields(fields, hmac_only, "TEST")
        assert await _post(client, fields) == 200
    assert await _queued(redis, strict) == 1


def _guarded(settings: Settings, trusted: list[str]) -> Settings:
    return settings.model_copy(
        update={
            "ipn_allowlist": [ipaddress.ip_network(PLATFORM_NETWORK)],
            "trusted_proxies": [ipaddress.ip_network(cidr) for cidr in trusted],
        }
    )


async def test_behind_a_trusted_proxy_the_allowlist_uses_the_forwarded_address(
    settings: Settings, redis: Redis, shop: ShopConfig
) -> None:
    """Peer 127.0.0.1 is the trusted proxy: the platform's forwarded address passes, an outsider's gets 403,
    and an address the client wrote left of the proxy's own entry is ignored."""
    async with receiver_client(_guarded(settings, ["127.0.0.1/32"])) as client:
        assert (
            await _post(client, accepted_payment(1, SHOP_ID, shop), **{"X-Forwarded-For": PLATFORM_ADDRESS})
            == 200
        )
        assert (
            await _post(client, accepted_payment(2, SHOP_ID, shop), **{"X-Forwarded-For": OUTSIDER_ADDRESS})
            == 403
        )
        spoofed = f"{PLATFORM_ADDRESS}, {OUTSIDER_ADDRESS}"
        assert await _post(client, accepted_payment(3, SHOP_ID, shop), **{"X-Forwarded-For": spoofed}) == 403
        assert await _post(client, accepted_payment(4, SHOP_ID, shop)) == 403
        health = await client.get("/healthz", headers={"X-Forwarded-For": OUTSIDER_ADDRESS})
        assert health.status == 200
    assert await _queued(redis, settings) == 1


async def test_without_a_trusted_proxy_a_forged_forwarded_address_is_not_believed(
    settings: Settings, redis: Redis, shop: ShopConfig
) -> None:
    """No trusted proxy configured: `X-Forwarded-For` naming the platform does not open the allowlist."""
    async with receiver_client(_guarded(settings, [])) as client:
        forged = {"X-Forwarded-For": PLATFORM_ADDRESS}
        assert await _post(client, accepted_payment(1, SHOP_ID, shop), **forged) == 403
    async with receiver_client(_guarded(settings, ["10.0.0.0/8"])) as client:
        assert await _post(client, accepted_payment(2, SHOP_ID, shop), **forged) == 403
    assert await _queued(redis, settings) == 0


async def test_the_allowlist_admits_the_direct_peer_without_any_proxy(
    settings: Settings, redis: Redis, shop: ShopConfig
) -> None:
    """An allowlist holding the peer's own address (no proxy in front) accepts its notifications."""
    direct = settings.model_copy(update={"ipn_allowlist": [ipaddress.ip_network("127.0.0.0/8")]})
    async with receiver_client(direct) as client:
        assert await _post(client, accepted_payment(1, SHOP_ID, shop)) == 200
    assert await _queued(redis, settings) == 1
