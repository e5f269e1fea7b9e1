"""`vads_trans_id` allocation: 6 characters [0-9a-z], unique per shop per UTC day, across processes.

A Redis counter per shop and UTC day (`cvco:trans_id:<shop>:<YYYYMMDD>`, INCR is atomic) gives each
form a distinct index; a keyed Feistel permutation of the 36^6 ids turns that index into an id that
does not reveal how many payments the shop took that day. The counter ignores the mode: one id is
never used twice in a day by a shop, TEST and PRODUCTION included.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis

from core.keys import TRANS_ID_COUNTER_PREFIX

ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
ID_LENGTH = 6
HALF = 36**3  # the Feistel works on two 3-character halves
SPACE = HALF * HALF  # 36^6 = 2,176,782,336 ids per shop per day
ROUNDS = 4
COUNTER_TTL_S = 2 * 86400  # outlives its UTC day whatever the clock skew between processes


class TransIdsExhausted(RuntimeError):
    """A shop used every one of the 36^6 ids of a UTC day."""


@dataclass(frozen=True, slots=True)
class TransactionIdentity:
    """A fresh `vads_trans_id` and its `vads_trans_date` (the allocation time, UTC, whole seconds)."""

    trans_id: str
    trans_date: datetime


def _round_value(half: int, round_no: int, tweak: str) -> int:
    digest = hashlib.blake2b(f"{tweak}:{round_no}:{half}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % HALF


def permute(index: int, tweak: str) -> int:
    """A bijection of [0, 36^6) chosen by `tweak`: a balanced Feistel network with addition mod 36^3."""
    left, right = divmod(index, HALF)
    for round_no in range(ROUNDS):
        left, right = right, (left + _round_value(right, round_no, tweak)) % HALF
    return left * HALF + right


def encode(value: int) -> str:
    """`value` in [0, 36^6) as 6 base-36 characters [0-9a-z]."""
    chars = []
    for _ in range(ID_LENGTH):
        value, digit = divmod(value, 36)
        chars.append(ALPHABET[digit])
    return "".join(reversed(chars))


def trans_id_for(index: int, shop_id: str, day: str) -> str:
    """The id of the `index`-th form of a shop on a UTC day (`YYYYMMDD`)."""
    if not 0 <= index < SPACE:
        raise TransIdsExhausted(f"shop {shop_id} used all {SPACE} transaction ids of {day}")
    return encode(permute(index, f"{shop_id}:{day}"))


async def allocate_trans_id(redis: Redis, shop_id: str, now: datetime | None = None) -> TransactionIdentity:
    """Claim the next id of the shop's UTC day; `vads_trans_date` is `now` (default: the clock), in UTC."""
    moment = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    day = moment.strftime("%Y%m%d")
    key = f"{TRANS_ID_COUNTER_PREFIX}{shop_id}:{day}"
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, COUNTER_TTL_S)
        count, _ = await pipe.execute()
    return TransactionIdentity(trans_id_for(int(count) - 1, shop_id, day), moment)
