"""Prometheus metrics of the receiver, on a registry of its own (several apps can live in one process).

Alert rules and dashboards are written against these exact names. The queue gauges are read from Redis
at scrape time and left out of the scrape when Redis does not answer, rather than showing stale values.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.keys import FAILED_INDEX

RequestOutcome = Literal[
    "ok", "duplicate", "bad_request", "too_large", "bad_signature", "forbidden", "unavailable", "client_gone"
]
OUTCOMES: tuple[RequestOutcome, ...] = (
    "ok",
    "duplicate",
    "bad_request",
    "too_large",
    "bad_signature",
    "forbidden",
    "unavailable",
    "client_gone",  # the client closed the connection before its request was read: not our failure
)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    depth: int
    oldest_age_s: float
    failed_jobs: int


class _QueueCollector(Collector):
    """Yields the queue gauges from the snapshot taken just before the scrape, if any."""

    def __init__(self) -> None:
        self.snapshot: QueueSnapshot | None = None

    def collect(self) -> Iterable[Metric]:
        snapshot = self.snapshot
        if snapshot is None:
            return
        yield GaugeMetricFamily(
            "cvco_ipn_queue_depth", "Notification jobs waiting in the queue", snapshot.depth
        )
        yield GaugeMetricFamily(
            "cvco_ipn_queue_oldest_age_seconds", "Age of the oldest queued job", snapshot.oldest_age_s
        )
        yield GaugeMetricFamily("cvco_ipn_failed_jobs", "Parked (failed) jobs", snapshot.failed_jobs)


class ReceiverMetrics:
    """Counters and histograms the receiver updates, plus scrape-time queue gauges."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        requests = Counter(
            "cvco_ipn_requests", "POST /ipn requests by outcome", ["outcome"], registry=registry
        )
        # one child per outcome, made now: each is exposed from the start (at 0), and found without a lock
        self._requests = {outcome: requests.labels(outcome) for outcome in OUTCOMES}
        self._enqueued = Counter("cvco_ipn_enqueued", "Notification jobs written", registry=registry)
        self._duplicates = Counter(
            "cvco_ipn_duplicates", "Notifications already queued or processed", registry=registry
        )
        self._enqueue_seconds = Histogram(
            "cvco_ipn_enqueue_seconds", "Time to write a job", buckets=_LATENCY_BUCKETS, registry=registry
        )
        self._request_seconds = Histogram(
            "cvco_ipn_request_seconds",
            "Time to answer POST /ipn",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.signature_failures = Counter(
            "cvco_ipn_signature_failures", "Signature mismatches by shop", ["shop"], registry=registry
        )
        self._queue = _QueueCollector()
        self.registry.register(self._queue)

    def count_request(self, outcome: RequestOutcome, latency_s: float) -> None:
        """One answered `POST /ipn`: its outcome and how long it took."""
        self._requests[outcome].inc()
        self._request_seconds.observe(latency_s)

    def count_enqueue(self, seconds: float, written: bool | None) -> None:
        """One job write and how long it took: a new job (True), a duplicate (False), no answer (None)."""
        self._enqueue_seconds.observe(seconds)
        if written:
            self._enqueued.inc()
        elif written is not None:
            self._duplicates.inc()

    async def render(self, redis: Redis, queue_name: str, timeout_s: float) -> bytes:
        """The Prometheus text exposition, with queue gauges when Redis answers within `timeout_s`."""
        try:
            self._queue.snapshot = await asyncio.wait_for(read_queue(redis, queue_name), timeout_s)
        except (RedisError, OSError, TimeoutError):
            self._queue.snapshot = None
        return generate_latest(self.registry)


async def read_queue(redis: Redis, queue_name: str) -> QueueSnapshot:
    """Depth and oldest age of the arq queue, and the number of parked jobs (0 while none exist)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zcard(queue_name)
        pipe.zrange(queue_name, 0, 0, withscores=True)
        pipe.zcard(FAILED_INDEX)
        depth, oldest, failed = await pipe.execute()
    # a retry deferred into the future has a score ahead of now: it is not late, so its age is 0
    oldest_age_s = max(0.0, time.time() - oldest[0][1] / 1000) if oldest else 0.0
    return QueueSnapshot(depth=int(depth), oldest_age_s=oldest_age_s, failed_jobs=int(failed))
