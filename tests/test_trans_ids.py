"""`vads_trans_id` allocation: 6 chars [0-9a-z], unique per shop per UTC day, atomic on the real Redis."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from core.keys import TRANS_ID_COUNTER_PREFIX
from forms.trans_ids import (
    SPACE,
    TransIdsExhausted,
    allocate_trans_id,
    encode,
    permute,
    trans_id_for,
)
from tests.conftest import SHOP_ID, TEST_REDIS_URL

TRANS_ID = re.compile(r"[0-9a-z]{6}")
NOON = datetime(2024, 7, 14, 12, 0, 0, tzinfo=UTC)


@given(st.integers(0, SPACE - 1), st.integers(0, SPACE - 1), st.text(max_size=20))
def test_the_permutation_stays_in_range_and_no_two_indices_share_an_id(
    index: int, other: int, tweak: str
) -> None:
    """`permute` maps [0, 36^6) into itself, and two different indices to two different ids."""
    value = permute(index, tweak)
    assert 0 <= value < SPACE
    assert (permute(other, tweak) == value) == (other == index)


@given(st.integers(0, SPACE - 1))
def test_encode_gives_6_base36_characters(value: int) -> None:
    encoded = encode(value)
    assert TRANS_ID.fullmatch(encoded)
    assert int(encoded, 36) == value


def test_consecutive_indices_do_not_give_consecutive_ids() -> None:
    """The counter behind the ids does not show: neighbours differ and do not step by a constant."""
    values = [int(trans_id_for(index, SHOP_ID, "20240714"), 36) for index in range(50)]
    steps = {later - earlier for earlier, later in zip(values, values[1:], strict=False)}
    assert len(set(values)) == 50
    assert len(steps) > 40


def test_another_day_or_shop_reorders_the_ids() -> None:
    assert trans_id_for(0, SHOP_ID, "20240714") != trans_id_for(0, SHOP_ID, "20240715")
    assert trans_id_for(0, SHOP_ID, "20240714") != trans_id_for(0, "87654321", "20240714")


def test_an_index_past_the_id_space_is_refused() -> None:
    with pytest.raises(TransIdsExhausted, match="used all 2176782336 transaction ids"):
        trans_id_for(SPACE, SHOP_ID, "20240714")


async def test_1000_concurrent_allocations_give_1000_distinct_ids(redis: Redis) -> None:
    """asyncio.gather on the real Redis: one shop, one UTC day, no id twice even ignoring case."""
    identities = await asyncio.gather(*(allocate_trans_id(redis, SHOP_ID, NOON) for _ in range(1000)))
    ids = [identity.trans_id for identity in identities]
    assert all(TRANS_ID.fullmatch(trans_id) for trans_id in ids)
    assert len({trans_id.lower() for trans_id in ids}) == 1000


async def test_concurrent_allocations_from_separate_clients_never_collide(redis: Redis) -> None:
    """Two connection pools stand for two processes: the Redis counter keeps them apart."""
    other = Redis.from_url(TEST_REDIS_URL)
    try:
        first, second = await asyncio.gather(
            asyncio.gather(*(allocate_trans_id(redis, SHOP_ID, NOON) for _ in range(200))),
            asyncio.gather(*(allocate_trans_id(other, SHOP_ID, NOON) for _ in range(200))),
        )
    finally:
        await other.aclose()
    assert len({identity.trans_id for identity in [*first, *second]}) == 400


async def test_the_trans_date_is_the_allocation_time_in_utc_on_the_counters_day(redis: Redis) -> None:
    """A time given in another zone is sent in UTC, and the UTC day (not the local one) picks the counter."""
    local = datetime(2024, 7, 15, 1, 30, 5, 250_000, tzinfo=timezone(timedelta(hours=2)))
    identity = await allocate_trans_id(redis, SHOP_ID, local)
    assert identity.trans_date == datetime(2024, 7, 14, 23, 30, 5, tzinfo=UTC)
    assert await redis.get(f"{TRANS_ID_COUNTER_PREFIX}{SHOP_ID}:20240714") == b"1"
    assert await redis.exists(f"{TRANS_ID_COUNTER_PREFIX}{SHOP_ID}:20240715") == 0


async def test_the_counter_expires_after_about_two_days(redis: Redis) -> None:
    await allocate_trans_id(redis, SHOP_ID, NOON)
    ttl = await redis.ttl(f"{TRANS_ID_COUNTER_PREFIX}{SHOP_ID}:20240714")
    assert 86400 < ttl <= 2 * 86400


async def test_the_clock_is_used_when_no_time_is_given(redis: Redis) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    identity = await allocate_trans_id(redis, SHOP_ID)
    assert before <= identity.trans_date <= datetime.now(UTC)
    assert identity.trans_date.tzinfo == UTC


async def test_each_day_starts_its_own_sequence(redis: Redis) -> None:
    """The first id of a day is the same whatever happened the day before: the counter is per day."""
    for _ in range(3):
        await allocate_trans_id(redis, SHOP_ID, NOON)
    next_day = await allocate_trans_id(redis, SHOP_ID, NOON + timedelta(days=1))
    assert next_day.trans_id == trans_id_for(0, SHOP_ID, "20240715")
