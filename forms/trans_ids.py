"""`vads_trans_id` allocation: 6 characters [0-9a-z], unique per shop per UTC day, across processes.

A Redis counter per shop and UTC day (`cvco:trans_id:<shop>:<YYYYMMDD>`, INCR is atomic) gives each
form a distinct index; a Feistel permutation of the 36^6 ids, keyed by a secret, turns that index into
an id that reveals neither how many payments the shop took that day nor the next ids. The secret is
drawn once per deployment and kept in Redis (`cvco:trans_id:secret`, no expiry), so every process
shares it and no configuration holds it. The counter ignores the mode: one id is never used twice in a
day by a shop, TEST and PRODUCTION included.

Ids 900000-999999 are the platform's own: a permuted value landing there is permuted again (cycle
walking), which keeps the mapping one-to-one on the ids left.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis

from core.keys import TRANS_ID_COUNTER_PREFIX, TRANS_ID_PERMUTATION_KEY
from schemas.notification import platform_reserved

ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
ID_LENGTH = 6
HALF = 36**3  # the Feistel works on two 3-character halves
SPACE = HALF * HALF  # 36^6 = 2,176,782,336 ids
INDICES = 9 * 36**5
"""Indices a shop may use per UTC day: those below the value of "900000", so none is a reserved id."""
ROUNDS = 4
COUNTER_TTL_S = 2 * 86400  # outlives its UTC day whatever the clock skew between processes


class TransIdsExhausted(RuntimeError):
    """A shop used every id it may use in a UTC day."""


@dataclass(frozen=True, slots=True)
class TransactionIdentity:
    """A fresh `vads_trans_id` and its `vads_trans_date` (the allocation time, UTC, whole seconds)."""

    trans_id: str
    trans_date: datetime


def _round_value(half: int, round_no: int, tweak: str, secret: bytes) -> int:
    digest = hashlib.blake2b(f"{tweak}:{round_no}:{half}".encode(), key=secret, digest_size=8).digest()
    return int.from_bytes(digest, "big") % HALF


def permute(index: int, tweak: str, secret: bytes) -> int:
    """A bijection of [0, 36^6) chosen by `tweak` and `secret`: a balanced Feistel network mod 36^3."""
    left, right = divmod(index, HALF)
    for round_no in range(ROUNDS):
        left, right = right, (left + _round_value(right, round_no, tweak, secret)) % HALF
    return left * HALF + right


def encode(value: int) -> str:
    """`value` in [0, 36^6) as 6 base-36 characters [0-9a-z]."""
    chars = []
    for _ in range(ID_LENGTH):
        value, digit = divmod(value, 36)
        chars.append(ALPHABET[digit])
    return "".join(reversed(chars))


def trans_id_for(index: int, shop_id: str, day: str, secret: bytes) -> str:
    """The id of the `index`-th form of a shop on a UTC day (`YYYYMMDD`), never a reserved one.

    Indices below `INDICES` are never reserved ids themselves, and walking the permutation's cycle from
    one of them past reserved values ends on a value that is not: distinct indices, distinct ids.
    """
    if not 0 <= index < INDICES:
        raise TransIdsExhausted(f"shop {shop_id} used all {INDICES} transaction ids of {day}")
    tweak = f"{shop_id}:{day}"
    trans_id = encode(permute(index, tweak, secret))
    while platform_reserved(trans_id):
        trans_id = encode(permute(int(trans_id, 36), tweak, secret))
    return trans_id


async def allocate_trans_id(redis: Redis, shop_id: str, now: datetime | None = None) -> TransactionIdentity:
    """Claim the next id of the shop's UTC day; `vads_trans_date` is `now` (default: the clock), in UTC."""
    moment = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    day = moment.strftime("%Y%m%d")
    key = f"{TRANS_ID_COUNTER_PREFIX}{shop_id}:{day}"
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(
            TRANS_ID_PERMUTATION_KEY, secrets.token_bytes(32), nx=True
        )  # the first allocation ever draws it
        pipe.get(TRANS_ID_PERMUTATION_KEY)
        pipe.incr(key)
        pipe.expire(key, COUNTER_TTL_S)
        _, secret, count, _ = await pipe.execute()
    return TransactionIdentity(trans_id_for(int(count) - 1, shop_id, day, secret), moment)
