"""A worker killed with `kill -9` mid-way, several times: every notification still ends in exactly one event.

arq leaves a killed worker's jobs in the queue with an `in-progress` key that expires after the job timeout
(+10 s); another worker then runs them again, and the workers' exactly-once apply publishes nothing twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import cast

import pytest
from redis import Redis

from tests.reliability.accounting import STREAM, tally, wait_for_events
from tests.reliability.conftest import scale
from tests.reliability.processes import Cluster, wait_until

NOTIFICATIONS = scale(ci=500, full=2000)
KILLS = 3


def _orphan_ttl_s(redis: Redis) -> float:
    """The longest time left before a killed worker's job may run again (arq's in-progress expiry)."""
    ttls = [cast(int, redis.pttl(key)) for key in cast(list[bytes], redis.keys("arq:in-progress:*"))]
    return max([0, *ttls]) / 1000


def _orphaned_jobs(redis: Redis) -> int:
    """Jobs marked in progress: with no worker alive, each was held by the worker just killed."""
    return len(cast(list[bytes], redis.keys("arq:in-progress:*")))


def _busy_past(redis: Redis, count: int) -> Callable[[], bool]:
    """The stream holds `count` events and the worker is in the middle of jobs (not between batches)."""
    return lambda: cast(int, redis.xlen(STREAM)) >= count and _orphaned_jobs(redis) > 0


@pytest.mark.timeout(scale(ci=120, full=300))
def test_killed_workers_lose_nothing_and_duplicate_nothing(cluster: Cluster) -> None:
    """N notifications queued, the only worker `kill -9`ed three times mid-way and replaced:

    exactly N events with N distinct event ids and N distinct payments, nothing queued, nothing parked,
    and at least one kill really interrupted jobs in progress.
    """
    cluster.start_redis()
    receiver = cluster.start_receiver()
    summary = cluster.simulate(
        f"http://127.0.0.1:{receiver.port}/ipn",
        *("--scenario", "cvco-full", "--count", str(NOTIFICATIONS), "--retry-interval", "1"),
    )
    assert summary["total"] == {"sent": NOTIFICATIONS, "accepted": NOTIFICATIONS, "retried": 0, "failed": 0}
    redis = Redis.from_url(cluster.redis_url)
    orphans = []
    try:
        assert redis.zcard("cvco:queue") == NOTIFICATIONS
        for kill in range(1, KILLS + 1):
            worker = cluster.start_worker()
            threshold = kill * NOTIFICATIONS // (KILLS + 2)
            wait_until(_busy_past(redis, threshold), 60, f"{threshold} events, jobs in progress", 0.005)
            worker.kill()
            orphans.append(_orphaned_jobs(redis))
        comeback_s = _orphan_ttl_s(redis)
        started = time.monotonic()
        cluster.start_worker()
        cluster.start_worker()
        # the orphans come back once their in-progress key expires: arq sets it to the longest function
        # timeout of the worker + 10 s, so the wait is read from Redis rather than assumed
        events = wait_for_events(cluster, NOTIFICATIONS, timeout_s=comeback_s + 30)
        recovery_s = time.monotonic() - started
    finally:
        redis.close()
    result = tally(cluster)
    print(
        f"worker crash: {NOTIFICATIONS} notifications, orphans per kill {orphans}, in-progress expiry "
        f"{comeback_s:.1f} s, recovery {recovery_s:.1f} s, {result.describe()}"
    )
    assert sum(orphans) > 0, "no kill interrupted a job: the test proved nothing"
    assert events == NOTIFICATIONS
    assert result.events == result.unique_event_ids == result.payments == NOTIFICATIONS
    assert result.duplicate_payments == 0
    assert result.types == {"payment.accepted": NOTIFICATIONS}
    assert (result.queued, result.parked) == (0, 0)
