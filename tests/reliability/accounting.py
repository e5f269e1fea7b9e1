"""Counting what the system did, from Redis itself: events on the stream, jobs queued, jobs parked.

"Nothing lost, nothing duplicated" is checked here: every notification sent must end as exactly one
event (unique event ids, one per payment), with an empty queue and no parked job.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, cast

from redis import Redis

from tests.reliability.processes import Cluster

QUEUE = "cvco:queue"
STREAM = "cvco:events"


def read_events(redis: Redis, stream: str = STREAM) -> list[dict[str, Any]]:
    """Every event JSON on the stream, oldest first."""
    events: list[dict[str, Any]] = []
    start = "-"
    while True:
        batch = cast(
            list[tuple[bytes, dict[bytes, bytes]]], redis.xrange(stream, min=start, max="+", count=5000)
        )
        for entry_id, entry in batch:
            events.append(json.loads(entry[b"event"]))
            start = "(" + entry_id.decode()
        if len(batch) < 5000:
            return events


@dataclass(frozen=True)
class Tally:
    """What Redis holds once the system is quiet."""

    events: int
    unique_event_ids: int
    payments: int
    duplicate_payments: int
    queued: int
    parked: int
    types: dict[str, int]

    def describe(self) -> str:
        return json.dumps(vars(self), sort_keys=True)


def tally(cluster: Cluster) -> Tally:
    """Count events (and their distinct ids and payments), queued notification jobs and parked jobs."""
    redis = Redis.from_url(cluster.redis_url)
    try:
        events = read_events(redis)
        # the workers' cron jobs (arq ids "<name>:<time>", names "cvco_...") wait in the queue too
        members = cast(list[bytes], redis.zrange(QUEUE, 0, -1))
        queued = sum(1 for member in members if not member.startswith(b"cvco_"))
    finally:
        redis.close()
    payments = Counter((e["shop_id"], e["mode"], e["trans_id"], e["trans_uuid"], e["type"]) for e in events)
    return Tally(
        events=len(events),
        unique_event_ids=len({e["event_id"] for e in events}),
        payments=len(payments),
        duplicate_payments=sum(count - 1 for count in payments.values()),
        queued=queued,
        parked=parked_count(cluster),
        types=dict(Counter(e["type"] for e in events)),
    )


def parked_count(cluster: Cluster) -> int:
    """How many jobs `cvco-ipn failed list --json` shows."""
    done = cluster.cli("failed", "list", "--json", timeout_s=60)
    if done.returncode != 0:
        raise RuntimeError(f"failed list exited {done.returncode}: {done.stderr.strip()}")
    return len(json.loads(done.stdout))


def wait_for_events(cluster: Cluster, expected: int, timeout_s: float) -> int:
    """Wait until the stream holds `expected` events and the queue is empty (or time runs out)."""
    redis = Redis.from_url(cluster.redis_url)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            count = cast(int, redis.xlen(STREAM))
            if (count >= expected and redis.zcard(QUEUE) == 0) or time.monotonic() > deadline:
                return count
            time.sleep(0.2)
    finally:
        redis.close()
