"""Bytes per payment of the history and the lookup indexes (a script, not collected by pytest).

10,000 payments (by default) go through the worker's own path (`handle_notification`) on a private
redis-server: each notified once (`PAY`, AUTHORISED), every second one also redelivered (`RETRY`, a
duplicate: a second history entry). Then `MEMORY USAGE ... SAMPLES 0` of every key, summed by kind
(the record: state and history; the index sets) and divided by the payments.

Run: .venv/bin/python -m tests.perf.history_memory [--payments N]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections import Counter
from pathlib import Path

from redis.asyncio import Redis

from core.keys import PAYMENT_PREFIX, REFS_PREFIX
from schemas.settings import Settings
from tests.conftest import SHOP_ID
from tests.notifications import notification, queued
from tests.perf.bench_worker import _settings, _trans_id
from tests.reliability.notifications import trans_uuid_for
from tests.reliability.processes import Cluster
from workers.payment_updates import handle_notification

BATCH = 200
KINDS = {PAYMENT_PREFIX: "record", REFS_PREFIX: "indexes"}


async def _load(redis: Redis, settings: Settings, payments: int) -> None:
    shop = settings.shops[SHOP_ID]
    jobs = []
    for index in range(payments):
        fields = notification(
            "AUTHORISED",
            trans_id=_trans_id(index),
            uuid=trans_uuid_for(index),
            extra={"vads_order_id": f"order-{index}"},
        )
        jobs.append(queued(fields, shop))
        if index % 2 == 0:
            jobs.append(queued({**fields, "vads_url_check_src": "RETRY"}, shop))
    for start in range(0, len(jobs), BATCH):
        await asyncio.gather(
            *(handle_notification(redis, settings, job) for job in jobs[start : start + BATCH])
        )


async def _measure(url: str, payments: int) -> Counter[str]:
    settings = _settings().model_copy(update={"redis_url": url})
    redis = Redis.from_url(url)
    try:
        await _load(redis, settings, payments)
        used: Counter[str] = Counter()
        async for raw in redis.scan_iter(count=1000):
            key = raw.decode()
            kind = next((name for prefix, name in KINDS.items() if key.startswith(prefix)), None)
            if kind is not None:
                used[kind] += await redis.memory_usage(key, samples=0) or 0
                used[f"{kind} keys"] += 1
        return used
    finally:
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir, Cluster(Path(workdir)) as cluster:
        cluster.start_redis()
        used = asyncio.run(_measure(cluster.redis_url, args.payments))
    print(f"{args.payments} payments ({args.payments + (args.payments + 1) // 2} notifications):")
    for kind in ("record", "indexes"):
        print(
            f"  {kind:8} {used[kind] / args.payments:7.0f} bytes/payment"
            f"  ({used[f'{kind} keys']} keys, {used[kind] / 1e6:.1f} MB)"
        )


if __name__ == "__main__":
    main()
