"""No secret leaks: every simulator scenario end to end through real `serve` and `worker` processes, then
their whole output and every event on the stream are searched for keys, signatures, `vads_hash` values
and unmasked card numbers.
"""

from __future__ import annotations

import asyncio
import random
import re
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis as AsyncRedis

from core.sessions import track_session
from core.signature import compute_signature
from schemas.session import PendingPayment
from simulator.deliver import RetryPolicy, Summary, play
from simulator.platform import Delivery
from simulator.scenarios import SCENARIOS, build_scenario
from tests.conftest import PRODUCTION_KEY, SHOP_ID, TEST_KEY
from tests.reliability.accounting import STREAM, wait_for_events
from tests.reliability.processes import Cluster, shop_config

# a whole token: digits inside a hex id (trans_uuid, event_id, job id) are not a card number
_DIGIT_RUN = re.compile(r"(?<![0-9A-Za-z])\d{13,19}(?![0-9A-Za-z])")


def _luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def card_numbers(text: str) -> list[str]:
    """Digit runs that could be a full card number: 13 to 19 digits passing the Luhn check, not a date."""
    return [
        run
        for run in _DIGIT_RUN.findall(text)
        if _luhn_valid(run) and not (len(run) == 14 and run.startswith("20"))
    ]


def every_delivery() -> list[Delivery]:
    """Every scenario once in TEST (the unparsable one included), and the plain payment in PRODUCTION."""
    shop, now, rng = shop_config(), datetime.now(UTC), random.Random(7)
    deliveries = [d for name in SCENARIOS for d in build_scenario(name, SHOP_ID, shop, "TEST", rng, now)]
    return deliveries + build_scenario("cvco-full", SHOP_ID, shop, "PRODUCTION", rng, now)


async def _play_all(url: str, redis_url: str, deliveries: list[Delivery]) -> Summary:
    redis = AsyncRedis.from_url(redis_url)

    async def register(pending: PendingPayment) -> bool:
        await track_session(redis, pending)
        return True

    try:
        return await play(
            url,
            deliveries,
            policy=RetryPolicy(timeout_s=5, retries=2, interval_s=0.5),
            register_session=register,
        )
    finally:
        await redis.aclose()


def _forged(deliveries: list[Delivery]) -> list[Delivery]:
    """The first notifications again with a signature under a wrong key: the 401 path logs too."""
    forged = []
    for delivery in [d for d in deliveries if d.fields][:5]:
        fields = dict(delivery.fields)
        fields["signature"] = compute_signature(fields, "wrong-key-0000", "HMAC-SHA-256")
        forged.append(Delivery("forged", "wrong key", delivery.order_id, fields))
    return forged


@pytest.mark.timeout(120)
def test_no_key_signature_hash_or_card_number_in_any_log_line_or_event(cluster: Cluster) -> None:
    """Receiver and worker output and the event stream hold no shop key, no full signature, no vads_hash
    and no unmasked card number, after every scenario, forged notifications and parked ones."""
    cluster.start_redis()
    receiver = cluster.start_receiver()
    worker = cluster.start_worker()
    deliveries = every_delivery()
    url = f"http://127.0.0.1:{receiver.port}/ipn"
    summary = asyncio.run(_play_all(url, cluster.redis_url, deliveries + _forged(deliveries)))
    expected = sum(len(d.expected) for d in deliveries if d.session is None)
    events = wait_for_events(cluster, expected, timeout_s=30)
    redis = AsyncRedis.from_url(cluster.redis_url)
    entries = asyncio.run(_stream_text(redis))
    receiver.stop()
    worker.stop()
    outputs = {"receiver": receiver.log_text(), "worker": worker.log_text(), "events": entries}
    secrets = {TEST_KEY: "TEST key", PRODUCTION_KEY: "PRODUCTION key"}
    for delivery in deliveries:
        for name in ("signature", "vads_hash"):
            if delivery.fields.get(name):
                secrets[delivery.fields[name]] = name
    print(
        f"secrets: {len(deliveries)} deliveries, {summary.total}, {events} events, "
        f"{len(secrets)} secret values, log bytes { {k: len(v) for k, v in outputs.items()} }"
    )
    assert events >= expected > 0
    assert '"job done"' in outputs["worker"] and "status" in outputs["receiver"]
    leaks = [
        f"{what} in {where}"
        for where, text in outputs.items()
        for value, what in secrets.items()
        if value in text
    ]
    leaks += [f"card number {n} in {where}" for where, text in outputs.items() for n in card_numbers(text)]
    assert leaks == []


async def _stream_text(redis: AsyncRedis) -> str:
    try:
        entries = await redis.xrange(STREAM)
        return "\n".join(repr(fields) for _, fields in entries)
    finally:
        await redis.aclose()


def test_the_card_number_detector_finds_a_full_number_and_ignores_dates_and_masks() -> None:
    """The leak check itself: a real test PAN is found; dates, masked numbers and hex ids are not."""
    assert card_numbers("pan=4970101234567899 ") == []  # fails Luhn
    assert card_numbers("pan=4111111111111111;") == ["4111111111111111"]
    assert card_numbers("vads_trans_date=20260101120000 masked=497010" + "X" * 6 + "0003") == []
    assert card_numbers('"event_id": "ab4111111111111111cd"') == []
