"""Prometheus metrics of the receiver, on a registry of its own (several apps can live in one process).

Alert rules and dashboards are written against these exact names. The queue gauges are read from Redis
at scrape time and left out of the scrape when Redis does not answer, rather than showing stale values.
The per-request counts are plain numbers turned into metric families at scrape time: a
prometheus_client `Counter.inc` or `Histogram.observe` (checks, a lock, a bucket loop) cost about
2 us a request for the three of them, against a fraction of that for adding to an int or a list.
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString
from redis.asyncio import Redis
from redis.exceptions import RedisError

FAILED_INDEX = "cvco:failed:index"
"""Sorted set of parked jobs, written by the workers' failed-job store."""

Outcome = Literal[
    "ok", "duplicate", "bad_request", "too_large", "bad_signature", "forbidden", "unavailable", "client_gone"
]
OUTCOMES: tuple[Outcome, ...] = (
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
# the `le` label of each bucket, +Inf last, written as prometheus_client writes it
_BUCKET_LABELS = tuple(floatToGoString(bound) for bound in (*_LATENCY_BUCKETS, float("inf")))  # type: ignore[no-untyped-call]  # prometheus_client leaves it untyped


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


class _Histogram:
    """One histogram's bucket counts (not cumulative; the last one is +Inf) and sum."""

    __slots__ = ("counts", "created", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(_LATENCY_BUCKETS) + 1)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, value: float) -> None:
        # the first bound >= value: a bucket counts the values up to and including its bound
        self.counts[bisect_left(_LATENCY_BUCKETS, value)] += 1
        self.sum += value

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        """The samples prometheus_client's `Histogram` exposes: cumulative buckets, count, sum, created."""
        cumulative, running = [], 0
        for label, count in zip(_BUCKET_LABELS, self.counts, strict=True):
            running += count
            cumulative.append((label, float(running)))
        family = HistogramMetricFamily(name, documentation, buckets=cumulative, sum_value=self.sum)
        family.samples.append(Sample(f"{name}_created", {}, self.created))
        return family


class _RequestCollector(Collector):
    """Yields the per-request counters and histograms from the plain numbers `ReceiverMetrics` keeps."""

    def __init__(self) -> None:
        self.created = time.time()
        self.by_outcome = dict.fromkeys(OUTCOMES, 0)
        self.enqueued = 0
        self.duplicates = 0
        self.enqueue_seconds = _Histogram()
        self.request_seconds = _Histogram()

    def _counter(self, name: str, documentation: str, value: int) -> CounterMetricFamily:
        return CounterMetricFamily(name, documentation, value=value, created=self.created)

    def collect(self) -> Iterable[Metric]:
        requests = CounterMetricFamily(
            "cvco_ipn_requests", "POST /ipn requests by outcome", labels=["outcome"]
        )
        for outcome, count in self.by_outcome.items():
            requests.add_metric([outcome], count, created=self.created)
        yield requests
        yield self._counter("cvco_ipn_enqueued", "Notification jobs written", self.enqueued)
        yield self._counter(
            "cvco_ipn_duplicates", "Notifications already queued or processed", self.duplicates
        )
        yield self.enqueue_seconds.family("cvco_ipn_enqueue_seconds", "Time to write a job")
        yield self.request_seconds.family("cvco_ipn_request_seconds", "Time to answer POST /ipn")


class ReceiverMetrics:
    """Counters and histograms the receiver updates, plus scrape-time queue gauges."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests = _RequestCollector()
        self.registry.register(self._requests)
        self.signature_failures = Counter(
            "cvco_ipn_signature_failures", "Signature mismatches by shop", ["shop"], registry=self.registry
        )
        self._queue = _QueueCollector()
        self.registry.register(self._queue)

    def count_request(self, outcome: Outcome, latency_s: float) -> None:
        """One answered `POST /ipn`: its outcome and how long it took."""
        requests = self._requests
        requests.by_outcome[outcome] += 1
        requests.request_seconds.observe(latency_s)

    def count_enqueue(self, seconds: float, written: bool | None) -> None:
        """One job write and how long it took: a new job (True), a duplicate (False), no answer (None)."""
        requests = self._requests
        requests.enqueue_seconds.observe(seconds)
        if written:
            requests.enqueued += 1
        elif written is not None:
            requests.duplicates += 1

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
