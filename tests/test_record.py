"""The stored payment record: the state's compact form, the previous layout still read, the index days
and hashes."""

from __future__ import annotations

import json
import time
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from core.keys import HISTORY_PREFIX, PAYMENT_PREFIX, REFS_PREFIX
from schemas.settings import Settings, ShopConfig
from tests.notifications import UUID_PAY, UUID_REFUND, notification, queued
from workers.apply import load_payment
from workers.history import FIRST_FILL, REINDEX_AFTER_DAYS, index_buckets, index_name, key_of_index_name
from workers.lookup import find_payments
from workers.payment import PaymentState, Transaction, derive
from workers.payment_updates import handle_notification
from workers.record import decode_state, encode_state, read_record

KEY = "12345678:TEST:20240501:ab12cd"

transactions = st.builds(
    Transaction,
    trans_uuid=st.one_of(st.none(), st.sampled_from(["a", "b"])),
    trans_id=st.one_of(st.none(), st.sampled_from(["ab12cd", "Ab12Cd", "900001"])),
    sequence_number=st.integers(0, 2),
    card_brand=st.one_of(st.none(), st.just("CVCO")),
    amount=st.integers(0, 9000),
    original_amount=st.one_of(st.none(), st.integers(0, 9000)),
    status=st.sampled_from(["AUTHORISED", "CAPTURED"]),
    auth_result=st.one_of(st.none(), st.just("00")),
    operation_type=st.sampled_from(["DEBIT", "CREDIT"]),
    presentation_date=st.one_of(st.none(), st.just("2024-05-01T12:00:00Z")),
)
slots = st.sampled_from(["a", "b", "ab12cd#1"])


@given(
    st.builds(
        PaymentState,
        key=st.just(KEY),
        shop_id=st.just("12345678"),
        mode=st.just("TEST"),
        trans_id=st.sampled_from(["ab12cd", "Ab12Cd"]),
        order_id=st.one_of(st.none(), st.just("order-42")),
        amount=st.one_of(st.none(), st.integers(0, 9000)),
        currency=st.one_of(st.none(), st.sampled_from([978, 840])),
        cascade=st.booleans(),
        legs=st.dictionaries(slots, transactions, max_size=3),
        refunds=st.dictionaries(slots, transactions, max_size=2),
        session_expired=st.booleans(),
        flags=st.lists(st.just("partial_refund"), max_size=1),
        customer=st.dictionaries(st.just("email"), st.just("a@example.fr")),
    )
)
def test_the_stored_form_of_a_state_reads_back_as_the_same_state(state: PaymentState) -> None:
    """Whatever the compact form leaves out (what the key says, the outcome, defaults, repeats) comes
    back on read."""
    derived = derive(state)
    assert decode_state(KEY, encode_state(derived)) == derived


def test_fields_of_a_newer_release_survive_the_stored_form() -> None:
    newer = PaymentState.model_validate(
        {**decode_state(KEY, '{"v":3,"o":null,"a":null}').model_dump(), "capture_dates": {"a": "2024-05-03"}}
    )
    assert decode_state(KEY, encode_state(newer)).model_extra == {"capture_dates": {"a": "2024-05-03"}}


async def test_a_payment_of_the_previous_layout_is_read_and_rewritten_by_its_next_write(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    """A hash and a history list (the previous release's): read as they are, then one string."""
    first = await handle_notification(redis, settings, queued(notification("AUTHORISED"), shop))
    state = await load_payment(redis, first.payment_key)
    assert state is not None
    old_entry = {
        "k": "n",
        "at": "2024-05-01T12:01:00+00:00",
        "src": "PAY",
        "st": "AUTHORISED",
        "did": "published",
    }
    old_entry |= {"uuid": UUID_PAY, "tid": "Ab12Cd", "rid": "r1", "ev": "payment.accepted", "eid": "e" * 64}
    await redis.delete(PAYMENT_PREFIX + KEY)
    await redis.hset(PAYMENT_PREFIX + KEY, mapping={"v": "1", "s": state.model_dump_json(), "hd": "2"})  # type: ignore[misc]  # redis-py types it Awaitable | int
    await redis.rpush(HISTORY_PREFIX + KEY, json.dumps(old_entry))  # type: ignore[misc]  # as above
    await redis.expire(PAYMENT_PREFIX + KEY, 3600)

    assert await load_payment(redis, KEY) == state
    (record,) = await find_payments(redis, KEY)
    assert record.dropped == 2 and [e["event_id"] for e in record.events] == ["e" * 64]

    captured = await handle_notification(
        redis, settings, queued(notification("CAPTURED", source="BATCH"), shop)
    )
    assert captured.event_type == "payment.captured"
    assert await redis.type(PAYMENT_PREFIX + KEY) == b"string"
    assert not await redis.exists(HISTORY_PREFIX + KEY)
    assert await redis.ttl(PAYMENT_PREFIX + KEY) > 0
    (record,) = await find_payments(redis, "order-42")
    assert [e["type"] for e in record.events] == ["payment.accepted", "payment.captured"]
    assert [n["request_id"] for n in record.notifications] == ["r1", "test"]


async def test_a_payment_written_long_after_its_index_day_is_indexed_again(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    """Within `REINDEX_AFTER_DAYS` a write keeps the index day; later it moves to the day of the write."""
    today = int(time.time() // 86400)
    bucket, _ = index_buckets("order-42")
    named = index_name(KEY).encode()
    await handle_notification(redis, settings, queued(notification("AUTHORISED"), shop))
    assert await redis.hget(f"{REFS_PREFIX}{today}:{bucket}", "order-42") == named  # type: ignore[misc]  # redis-py types it Awaitable | value
    refund = notification("CAPTURED", uuid=UUID_REFUND, operation="CREDIT", source="MERCH_BO")
    later = ((REINDEX_AFTER_DAYS, notification("CAPTURED", source="BATCH")), (REINDEX_AFTER_DAYS + 1, refund))
    for age, fields in later:
        record = await read_record(redis, KEY)
        assert record is not None
        await redis.flushdb()
        await redis.set(PAYMENT_PREFIX + KEY, replace(record, index_day=str(today - age)).encoded(), ex=3600)
        assert (await handle_notification(redis, settings, queued(fields, shop))).published
        indexed = today - age if age <= REINDEX_AFTER_DAYS else today
        days = {key.split(b":")[2] for key in await redis.keys(f"{REFS_PREFIX}*")}
        assert days == {str(indexed).encode()}
        assert await redis.hget(f"{REFS_PREFIX}{indexed}:{bucket}", "order-42") == named  # type: ignore[misc]  # as above
        assert [r.payment_key for r in await find_payments(redis, "order-42")] == [KEY]


async def test_the_history_names_each_notification_s_transaction_by_its_place_in_the_state(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    """A trans_uuid the state knows is kept as the transaction's place, and reads back as the trans_uuid."""
    refund = notification("CAPTURED", uuid=UUID_REFUND, operation="CREDIT", source="MERCH_BO")
    unknown = notification("AUTHORISED", uuid="d" * 32, source="RETRY")  # stale copy of another attempt
    for fields in (notification("AUTHORISED"), refund, notification("AUTHORISED", source="RETRY"), unknown):
        await handle_notification(redis, settings, queued(fields, shop))
    record = await read_record(redis, KEY)
    assert record is not None and UUID_PAY not in "".join(record.entries)
    (found,) = await find_payments(redis, KEY)
    uuids = [n["trans_uuid"] for n in found.notifications]
    assert uuids == [UUID_PAY, UUID_REFUND, UUID_PAY, "d" * 32]


@given(
    st.text("0123456789", min_size=1, max_size=8),
    st.sampled_from(["TEST", "PRODUCTION"]),
    st.text("aB1:", min_size=1, max_size=12),
)
def test_an_index_name_reads_back_as_its_payment_key(shop_id: str, mode: str, rest: str) -> None:
    """The index names a payment by its mode's initial; a full key (the previous release's) reads as itself."""
    key = f"{shop_id}:{mode}:{rest}"
    assert index_name(key) == f"{shop_id}:{mode[0]}:{rest}"
    assert key_of_index_name(index_name(key)) == key == key_of_index_name(key)


async def test_values_overflow_a_full_first_hash_and_are_found_in_either(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    """A day's first hash takes `FIRST_FILL` values, the rest go to their overflow hash; a lookup reads
    both, and the previous release's entries (the full key, in what is now the overflow hash)."""
    today = int(time.time() // 86400)
    first, overflow = (f"{REFS_PREFIX}{today}:{bucket}" for bucket in index_buckets("order-42"))
    await redis.hset(first, mapping={f"other-{n}": "1:T:2:3" for n in range(FIRST_FILL)})  # type: ignore[misc]  # redis-py types it Awaitable | int
    await handle_notification(redis, settings, queued(notification("AUTHORISED"), shop))
    assert await redis.hlen(first) == FIRST_FILL  # type: ignore[misc]  # as above
    assert await redis.hget(overflow, "order-42") == index_name(KEY).encode()  # type: ignore[misc]  # as above
    assert [r.payment_key for r in await find_payments(redis, "order-42")] == [KEY]

    older = "12345678:TEST:20240430:ab12cd"
    await redis.hset(overflow, "order-42\nabcdef01", older)  # type: ignore[misc]  # as above
    await redis.set(PAYMENT_PREFIX + older, (await redis.get(PAYMENT_PREFIX + KEY)) or b"", ex=3600)
    found = [r.payment_key for r in await find_payments(redis, "order-42")]
    assert found == sorted([KEY, older])
