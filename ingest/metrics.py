"""Prometheus metrics of the receiver, on a registry of its own (several apps can live in one process).

Alert rules and dashboards are written against these exact names. The queue gauges are read from Redis
at scrape time and left out of the scrape when Redis does not answer, rather than showing stale values.
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import accumulate
from typing import Literal

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
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

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    depth: int
    oldest_age_s: float
    failed_jobs: int


class _Histogram:
    """A histogram's bucket counts and sum as plain numbers, exposed at scrape time.

    The receiver updates its metrics from the one event-loop thread: prometheus_client's `Histogram`
    would take a lock per bucket counted, on every request.
    """

    def __init__(self, name: str, documentation: str) -> None:
        self.name, self.documentation = name, documentation
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1  # a bucket counts values <= its bound
        self.sum += seconds

    def family(self) -> HistogramMetricFamily:
        bounds = [*map(repr, LATENCY_BUCKETS), "+Inf"]
        return HistogramMetricFamily(
            self.name,
            self.documentation,
            buckets=list(zip(bounds, accumulate(self.counts), strict=True)),
            sum_value=self.sum,
        )


class ReceiverMetrics(Collector):
    """What the receiver counts (plain numbers, see `_Histogram`), exposed with scrape-time queue gauges."""

    def __init__(self) -> None:
        self.requests = dict.fromkeys(OUTCOMES, 0)
        self.enqueued = 0
        self.duplicates = 0
        self.signature_failures: Counter[str] = Counter()
        self._enqueue_seconds = _Histogram("cvco_ipn_enqueue_seconds", "Time to write a job")
        self._request_seconds = _Histogram("cvco_ipn_request_seconds", "Time to answer POST /ipn")
        self._queue: QueueSnapshot | None = None
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def count_request(self, outcome: RequestOutcome, latency_s: float) -> None:
        """One answered `POST /ipn`: its outcome and how long it took."""
        self.requests[outcome] += 1
        self._request_seconds.observe(latency_s)

    def count_enqueue(self, seconds: float, written: bool | None) -> None:
        """One job write and how long it took: a new job (True), a duplicate (False), no answer (None)."""
        self._enqueue_seconds.observe(seconds)
        if written:
            self.enqueued += 1
        elif written is not None:
            self.duplicates += 1

    def collect(self) -> Iterable[Metric]:
        requests = CounterMetricFamily(
            "cvco_ipn_requests", "POST /ipn requests by outcome", labels=["outcome"]
        )
        for outcome, count in self.requests.items():
            requests.add_metric([outcome], count)
        yield requests
        yield CounterMetricFamily("cvco_ipn_enqueued", "Notification jobs written", self.enqueued)
        yield CounterMetricFamily(
            "cvco_ipn_duplicates", "Notifications already queued or processed", self.duplicates
        )
        yield self._enqueue_seconds.family()
        yield self._request_seconds.family()
        failures = CounterMetricFamily(
            "cvco_ipn_signature_failures", "Signature mismatches by shop", labels=["shop"]
        )
        for shop, count in self.signature_failures.items():
            failures.add_metric([shop], count)
        yield failures
        if (snapshot := self._queue) is not None:
            yield GaugeMetricFamily(
                "cvco_ipn_queue_depth", "Notification jobs waiting in the queue", snapshot.depth
            )
            yield GaugeMetricFamily(
                "cvco_ipn_queue_oldest_age_seconds", "Age of the oldest queued job", snapshot.oldest_age_s
            )
            yield GaugeMetricFamily("cvco_ipn_failed_jobs", "Parked (failed) jobs", snapshot.failed_jobs)

    async def render(self, redis: Redis, queue_name: str, timeout_s: float) -> bytes:
        """The Prometheus text exposition, with queue gauges when Redis answers within `timeout_s`."""
        try:
            self._queue = await asyncio.wait_for(read_queue(redis, queue_name), timeout_s)
        except (RedisError, OSError, TimeoutError):
            self._queue = None
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
