"""The exactly-once apply on a real Redis: any order, any duplicates, concurrent workers, one event each."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from core.keys import PAYMENT_PREFIX
from core.sessions import load_session
from schemas.notification import parse_notification
from schemas.settings import Settings, ShopConfig
from tests.conftest import TEST_REDIS_URL, free_port
from tests.notifications import (
    RECEIVED_AT,
    UUID_CB,
    UUID_PAY,
    UUID_REFUND,
    cascade,
    event_of,
    leg,
    notification,
    queued,
)
from workers.apply import PAYMENT_TTL_S, StateWriter, VersionConflict, apply_decision, load_payment
from workers.decide import decide
from workers.payment import PaymentState
from workers.payment_updates import handle_notification
from workers.record import read_record

SINGLE_LIFE = [
    notification("WAITING_AUTHORISATION", auth=None),
    notification("AUTHORISED"),
    notification("AUTHORISED", source="BO"),
    notification("CAPTURED", source="BATCH"),
    notification("CAPTURED", uuid=UUID_REFUND, operation="CREDIT", source="MERCH_BO"),
]
CASCADE_LIFE = [
    cascade(
        [leg(1, "CVCO", 6000, "AUTHORISED", UUID_PAY), leg(2, "CB", 4000, "WAITING_AUTHORISATION", UUID_CB)]
    ),
    cascade([leg(2, "CB", 4000, "AUTHORISED", UUID_CB)]),
    cascade(
        [leg(1, "CVCO", 6000, "CAPTURED", UUID_PAY), leg(2, "CB", 4000, "CAPTURED", UUID_CB)], source="BATCH"
    ),
]
CANCEL_LIFE = [
    notification("WAITING_AUTHORISATION", auth=None),
    notification("AUTHORISED"),
    notification("CANCELLED", source="MERCH_BO", auth=None),
    notification("AUTHORISED", source="RETRY"),
]
LIVES = {"single": SINGLE_LIFE, "cascade": CASCADE_LIFE, "cancel": CANCEL_LIFE}


def essence(state: PaymentState | None) -> object:
    """The whole stored state: its transactions and the outcome derived from them."""
    assert state is not None
    return state.model_dump()


def pure_final(notes: list[dict[str, str]]) -> tuple[object, list[str]]:
    state: PaymentState | None = None
    ids = []
    for fields in notes:
        decision = decide(state, parse_notification(fields), RECEIVED_AT)
        state = decision.state or state
        if decision.event:
            ids.append(event_of(decision).event_id)
    return essence(state), ids


orders = st.sampled_from(sorted(LIVES)).flatmap(
    lambda name: st.tuples(
        st.just(name),
        st.permutations(LIVES[name]),
        st.lists(st.sampled_from(LIVES[name]), max_size=4),
    )
)


@hypothesis_settings(max_examples=60, deadline=None)
@given(orders)
def test_pure_core_any_order_and_duplicates_give_one_final_state_and_no_repeated_event(
    case: tuple[str, list[dict[str, str]], list[dict[str, str]]],
) -> None:
    """The state machine plus its fingerprint dedupe converge whatever the order, never repeating an event."""
    name, permutation, duplicates = case
    notes = list(permutation) + duplicates
    final, ids = pure_final(notes)
    assert final == pure_final(LIVES[name])[0]
    assert len(ids) == len(set(ids))


@hypothesis_settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=orders)
async def test_redis_path_any_order_and_duplicates_give_one_final_state_and_no_repeated_event(
    redis: Redis,
    settings: Settings,
    shop: ShopConfig,
    case: tuple[str, list[dict[str, str]], list[dict[str, str]]],
) -> None:
    """Through handle_notification and the Lua apply: same final state, each stream event_id once."""
    await redis.flushdb()
    name, permutation, duplicates = case
    outcomes = [
        await handle_notification(redis, settings, queued(fields, shop))
        for fields in [*permutation, *duplicates]
    ]
    key = outcomes[0].payment_key
    assert essence(await load_payment(redis, key)) == pure_final(LIVES[name])[0]
    entries = await redis.xrange(settings.stream)
    ids = [json.loads(fields[b"event"])["event_id"] for _, fields in entries]
    assert len(ids) == len(set(ids)) == sum(outcome.published for outcome in outcomes)


async def test_two_workers_on_the_same_notification_at_once_publish_one_event(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    """Concurrent handle_notification calls on separate connections: one publishes, the others do not."""
    clients = [Redis.from_url(TEST_REDIS_URL) for _ in range(4)]
    try:
        for round_number in range(10):
            trans_id = f"Cc{round_number:04d}"
            copies = [
                notification("AUTHORISED", trans_id=trans_id, source=src)
                for src in ("PAY", "BO", "RETRY", "PAY")
            ]
            outcomes = await asyncio.gather(
                *(
                    handle_notification(client, settings, queued(fields, shop))
                    for client, fields in zip(clients, copies, strict=True)
                )
            )
            assert sorted(outcome.result for outcome in outcomes) == [
                "duplicate",
                "duplicate",
                "duplicate",
                "published",
            ]
    finally:
        for client in clients:
            await client.aclose()
    assert await redis.xlen(settings.stream) == 10


async def test_a_rerun_of_an_applied_job_publishes_nothing_and_the_state_expires(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    """A job re-run (after a crash past its write) is a duplicate; the payment hash carries its TTL."""
    job = queued(notification("AUTHORISED"), shop)
    first = await handle_notification(redis, settings, job)
    again = await handle_notification(redis, settings, job)
    assert (first.result, again.result) == ("published", "duplicate")
    assert await redis.xlen(settings.stream) == 1
    ttl = await redis.ttl(PAYMENT_PREFIX + first.payment_key)
    assert PAYMENT_TTL_S - 60 < ttl <= PAYMENT_TTL_S


async def test_stream_entries_carry_filter_fields_and_stay_in_order(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    """Each entry has `event`, `type`, `shop_id`, `event_id`; a payment's events come in the order applied."""
    for fields in SINGLE_LIFE:
        await handle_notification(redis, settings, queued(fields, shop))
    entries = await redis.xrange(settings.stream)
    types = [fields[b"type"].decode() for _, fields in entries]
    assert types == ["payment.pending", "payment.accepted", "payment.captured", "payment.refunded"]
    for (_, earlier), (_, later) in pairwise(entries):
        assert json.loads(earlier[b"event"])["event_id"] != json.loads(later[b"event"])["event_id"]
    assert {fields[b"shop_id"] for _, fields in entries} == {b"12345678"}


async def test_a_pending_notification_watches_its_session_until_timeout_plus_grace(
    redis: Redis, settings: Settings, shop: ShopConfig
) -> None:
    """The first pending notification starts the expiry watch, deadline = trans_date + timeout + grace."""
    settings = settings.model_copy(update={"session_timeout_s": 600, "session_grace_s": 300})
    outcome = await handle_notification(redis, settings, queued(notification("WAITING_AUTHORISATION"), shop))
    session = await load_session(redis, outcome.payment_key)
    assert session is not None and session.registered_by == "notification"
    assert session.deadline - session.trans_date == timedelta(seconds=900)


async def test_two_conflicting_writes_of_one_payment_in_one_batch_apply_in_order(
    settings: Settings, redis: Redis
) -> None:
    """Two decisions made on the same version of one payment, written in the same batch: the first one
    submitted wins, the second gets a conflict carrying the first one's state, and one event is published."""
    authorised = decide(None, parse_notification(notification("AUTHORISED")), RECEIVED_AT)
    captured = decide(None, parse_notification(notification("CAPTURED", source="BATCH")), RECEIVED_AT)
    writer = StateWriter.for_settings(redis, settings)
    first, second = await asyncio.gather(
        apply_decision(writer, "0", authorised),
        apply_decision(writer, "0", captured),
        return_exceptions=True,
    )
    assert isinstance(first, str) and first
    assert isinstance(second, VersionConflict)
    assert second.version == "1" and second.state == authorised.state
    assert await load_payment(redis, authorised.state.key if authorised.state else "") == authorised.state
    entries = await redis.xrange(settings.stream)
    assert [fields[b"type"] for _, fields in entries] == [b"payment.accepted"]


async def test_one_payment_notified_many_times_at_once_on_one_client_settles_as_in_sequence(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    """Every notification of a payment's life handled concurrently through one writer, as a worker's jobs
    are (their writes share batches and conflict within them): the final state is the sequential one, no
    event repeats."""
    life = [*SINGLE_LIFE, *SINGLE_LIFE[:2]]
    writer = StateWriter.for_settings(redis, settings)
    outcomes = await asyncio.gather(
        *(handle_notification(redis, settings, queued(f, shop), writer) for f in life)
    )
    assert essence(await load_payment(redis, outcomes[0].payment_key)) == pure_final(SINGLE_LIFE)[0]
    entries = await redis.xrange(settings.stream)
    ids = [json.loads(fields[b"event"])["event_id"] for _, fields in entries]
    assert len(ids) == len(set(ids)) == sum(outcome.published for outcome in outcomes) >= 2


async def test_writes_of_one_batch_apply_in_order_of_receipt_not_of_submission(
    settings: Settings, redis: Redis
) -> None:
    """A notification received earlier but reaching the write later in the same batch still goes first."""
    authorised = decide(None, parse_notification(notification("AUTHORISED")), RECEIVED_AT)
    captured = decide(None, parse_notification(notification("CAPTURED", source="BATCH")), RECEIVED_AT)
    writer = StateWriter.for_settings(redis, settings)
    later, earlier = await asyncio.gather(
        apply_decision(writer, "0", captured, received=2.0),
        apply_decision(writer, "0", authorised, received=1.0),
        return_exceptions=True,
    )
    assert isinstance(earlier, str) and isinstance(later, VersionConflict)
    assert later.state == authorised.state


async def _evalsha_calls(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[Redis]:
    """A redis-server of this test's own: its command counts are this test's alone, and a CLIENT PAUSE
    holds no one else's writes."""
    port = free_port()
    argv = ["--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    server = await asyncio.create_subprocess_exec(
        "redis-server", *argv, cwd=tmp_path, stdout=asyncio.subprocess.DEVNULL
    )
    client = Redis(port=port)
    try:
        while True:
            try:
                await client.ping()
                break
            except RedisConnectionError:
                await asyncio.sleep(0.05)  # the server is still starting
        yield client
    finally:
        await client.aclose()
        server.terminate()
        await server.wait()


async def _held_script_call(redis: Redis) -> None:
    """Return once a client of this database waits in Redis on a script call (held by CLIENT PAUSE)."""
    db = redis.connection_pool.connection_kwargs.get("db", 0)
    held = False
    while not held:
        clients = await redis.client_list()
        held = any(c["cmd"] == "evalsha" and "b" in c["flags"] and int(c["db"]) == db for c in clients)


async def test_writes_submitted_while_a_batch_is_in_flight_go_together_in_the_next_one(
    settings: Settings, private_redis: Redis
) -> None:
    redis = private_redis
    """Redis holds the first batch (CLIENT PAUSE) while two more writes arrive, in two different turns:
    they wait for it and share one script call, so three writes cost two round trips, not three."""
    first, second, third = (
        decide(None, parse_notification(notification("AUTHORISED", trans_id=trans_id)), RECEIVED_AT)
        for trans_id in ("000001", "000002", "000003")
    )
    writer = StateWriter.for_settings(redis, settings)
    await apply_decision(writer, "0", first)  # the script is cached: one EVALSHA per batch from now
    await redis.delete(PAYMENT_PREFIX + (first.state.key if first.state else ""))
    calls_before = await _evalsha_calls(redis)
    # WRITE mode: scripts wait, CLIENT LIST and INFO still answer; lifted as soon as the writes are in
    await redis.client_pause(10_000, all=False)
    try:
        writes = [asyncio.create_task(apply_decision(writer, "0", first))]
        await _held_script_call(redis)
        writes.append(asyncio.create_task(apply_decision(writer, "0", second)))
        await asyncio.sleep(0)  # a later turn
        writes.append(asyncio.create_task(apply_decision(writer, "0", third)))
        await asyncio.sleep(0)  # the third is submitted
    finally:
        await redis.client_unpause()
    stream_ids = await asyncio.gather(*writes)
    assert all(stream_ids) and len(set(stream_ids)) == 3
    assert await _evalsha_calls(redis) - calls_before == 2


async def test_a_state_written_by_a_newer_release_is_read_not_parked(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    """Rolling deploy: a newer worker's state (higher version, fields unknown here) is read and built on."""
    first = await handle_notification(redis, settings, queued(notification("AUTHORISED"), shop))
    key = PAYMENT_PREFIX + first.payment_key
    record = await read_record(redis, first.payment_key)
    assert record is not None
    newer = json.loads(record.state)  # stored names (workers.record): v version, L legs
    newer.update(v=99, history=[{"at": "2024-05-01T12:01:00Z"}], capture_dates={"a": "2024-05-03"})
    for tx in newer["L"].values():
        tx["capture_requested_by"] = "merchant"
    await redis.set(key, replace(record, state=json.dumps(newer)).encoded(), keepttl=True)
    captured = await handle_notification(
        redis, settings, queued(notification("CAPTURED", source="BATCH"), shop)
    )
    assert (captured.result, captured.event_type) == ("published", "payment.captured")
    state = await load_payment(redis, first.payment_key)
    assert state is not None and state.phase == "captured" and state.version == 99
    record = await read_record(redis, first.payment_key)
    assert record is not None
    kept = json.loads(record.state)
    assert kept["history"] == newer["history"] and kept["capture_dates"] == newer["capture_dates"]
    assert all(tx["capture_requested_by"] == "merchant" for tx in kept["L"].values())


async def test_a_state_written_by_the_previous_release_is_read_and_moves_on(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    """The first release's state (fingerprints in `seen`, a `source` per transaction) still applies."""
    old = {
        "key": "12345678:TEST:20240501:ab12cd",
        "shop_id": "12345678",
        "mode": "TEST",
        "trans_id": "Ab12Cd",
        "order_id": "order-42",
        "amount": 5000,
        "currency": 978,
        "cascade": False,
        "legs": {
            UUID_PAY: {
                "trans_uuid": UUID_PAY,
                "sequence_number": 1,
                "card_brand": "CVCO",
                "amount": 5000,
                "status": "AUTHORISED",
                "auth_result": "0",
                "operation_type": "DEBIT",
                "source": "PAY",
            }
        },
        "refunds": {},
        "session_expired": False,
        "phase": "accepted",
        "paid_amount": 5000,
        "cvco_amount": 5000,
        "refunded_amount": 0,
        "seen": ["0" * 64],
    }
    key = PAYMENT_PREFIX + "12345678:TEST:20240501:ab12cd"
    await redis.hset(key, mapping={"v": "1", "s": json.dumps(old)})  # type: ignore[misc]  # redis-py types it Awaitable | value
    again = await handle_notification(redis, settings, queued(notification("AUTHORISED", source="BO"), shop))
    cancelled = await handle_notification(
        redis, settings, queued(notification("CANCELLED", source="RETRY"), shop)
    )
    assert (again.result, cancelled.event_type) == ("duplicate", "payment.cancelled")
