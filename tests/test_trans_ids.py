"""`vads_trans_id` allocation: 6 chars [0-9a-z], unique per shop per UTC day, atomic on the real Redis."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from core.keys import TRANS_ID_COUNTER_PREFIX, TRANS_ID_PERMUTATION_KEY
from forms.trans_ids import (
    INDICES,
    SPACE,
    TransIdsExhausted,
    allocate_trans_id,
    encode,
    permute,
    trans_id_for,
)
from schemas.notification import platform_reserved
from tests.conftest import SHOP_ID, TEST_REDIS_URL

TRANS_ID = re.compile(r"[0-9a-z]{6}")
NOON = datetime(2024, 7, 14, 12, 0, 0, tzinfo=UTC)
SECRET = b"k" * 32


@given(
    st.integers(0, SPACE - 1),
    st.integers(0, SPACE - 1),
    st.text(max_size=20),
    st.binary(min_size=16, max_size=32),
)
def test_the_permutation_stays_in_range_and_no_two_indices_share_an_id(
    index: int, other: int, tweak: str, secret: bytes
) -> None:
    """`permute` maps [0, 36^6) into itself, and two different indices to two different ids."""
    value = permute(index, tweak, secret)
    assert 0 <= value < SPACE
    assert (permute(other, tweak, secret) == value) == (other == index)


@given(st.integers(0, SPACE - 1))
def test_encode_gives_6_base36_characters(value: int) -> None:
    encoded = encode(value)
    assert TRANS_ID.fullmatch(encoded)
    assert int(encoded, 36) == value


def test_consecutive_indices_do_not_give_consecutive_ids() -> None:
    """The counter behind the ids does not show: neighbours differ and do not step by a constant."""
    values = [int(trans_id_for(index, SHOP_ID, "20240714", SECRET), 36) for index in range(50)]
    steps = {later - earlier for earlier, later in zip(values, values[1:], strict=False)}
    assert len(set(values)) == 50
    assert len(steps) > 40


def test_another_day_or_shop_reorders_the_ids() -> None:
    assert trans_id_for(0, SHOP_ID, "20240714", SECRET) != trans_id_for(0, SHOP_ID, "20240715", SECRET)
    assert trans_id_for(0, SHOP_ID, "20240714", SECRET) != trans_id_for(0, "87654321", "20240714", SECRET)


def test_public_data_alone_does_not_give_the_ids() -> None:
    """Knowing the shop and the day is not enough: another secret gives other ids for the same indices."""
    ours = [trans_id_for(index, SHOP_ID, "20240714", SECRET) for index in range(20)]
    theirs = [trans_id_for(index, SHOP_ID, "20240714", b"guess" * 8) for index in range(20)]
    assert len(set(ours) & set(theirs)) <= 1


def test_no_id_is_one_of_the_platforms_reserved_900000_to_999999() -> None:
    """300,000 ids of a shop-day (where the unkeyed permutation gave 13 reserved ones): none reserved,
    none twice, and an index whose permuted value is reserved still gets an id of its own."""
    ids = [trans_id_for(index, SHOP_ID, "20240714", SECRET) for index in range(300_000)]
    assert not [trans_id for trans_id in ids if platform_reserved(trans_id)]
    assert len(set(ids)) == len(ids)
    tweak = f"{SHOP_ID}:20240714"
    walked = [index for index in range(300_000) if platform_reserved(encode(permute(index, tweak, SECRET)))]
    assert walked  # the cycle walk did happen for some indices


async def test_the_secret_is_drawn_once_and_kept_in_redis(redis: Redis) -> None:
    """The first allocation draws it; every later one, from any process, uses the same."""
    first = await allocate_trans_id(redis, SHOP_ID, NOON)
    secret = await redis.get(TRANS_ID_PERMUTATION_KEY)
    assert secret is not None and len(secret) == 32
    second = await allocate_trans_id(redis, SHOP_ID, NOON)
    assert await redis.get(TRANS_ID_PERMUTATION_KEY) == secret
    assert [first.trans_id, second.trans_id] == [trans_id_for(i, SHOP_ID, "20240714", secret) for i in (0, 1)]


def test_an_index_past_the_id_space_is_refused() -> None:
    with pytest.raises(TransIdsExhausted, match=f"used all {INDICES} transaction ids"):
        trans_id_for(INDICES, SHOP_ID, "20240714", SECRET)


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
    assert next_day.trans_id == trans_id_for(
        0, SHOP_ID, "20240715", await redis.get(TRANS_ID_PERMUTATION_KEY)
    )
