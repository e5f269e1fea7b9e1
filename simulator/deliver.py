"""Delivery as the platform does it: form-urlencoded POSTs, success by HTTP status alone, bounded retries.

`play(url, deliveries, ...)` sends every delivery, the notifications of one payment one after the other
(the platform notifies a payment's states in order) and different payments concurrently, at an optional
rate, and returns a `Summary` of what was accepted, retried and finally failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from ssl import SSLContext
from typing import Any

import aiohttp

from schemas.session import PendingPayment
from simulator.scenarios import Delivery

SUCCESS_STATUSES = frozenset((*range(200, 207), 301, 302, 303, 307, 308))
"""The platform counts these HTTP statuses as delivered; anything else, or no answer in time, fails."""


@dataclass(frozen=True)
class RetryPolicy:
    """The platform's automatic retry: a timeout per attempt and up to `retries` more attempts."""

    timeout_s: float = 10.0
    retries: int = 4
    interval_s: float = 900.0


@dataclass(frozen=True)
class Attempt:
    status: int | None
    latency_s: float
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status in SUCCESS_STATUSES


@dataclass(frozen=True)
class DeliveryOutcome:
    """What happened to one delivery: every attempt, the last one deciding."""

    delivery: Delivery
    attempts: tuple[Attempt, ...]

    @property
    def delivered(self) -> bool:
        return bool(self.attempts) and self.attempts[-1].delivered


class TokenBucket:
    """At most `rate` acquisitions per second on average, with a short burst allowance."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate / 20)
        self._tokens = self.capacity
        self._last = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.rate)


async def post_once(
    session: aiohttp.ClientSession, url: str, fields: Mapping[str, str], timeout_s: float
) -> Attempt:
    """One POST; a network error or no full answer within `timeout_s` is a failed attempt."""
    started = time.monotonic()
    try:
        async with session.post(
            url,
            data=dict(fields),
            allow_redirects=False,  # a redirect is itself a success for the platform, never followed
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            await response.read()
            return Attempt(response.status, time.monotonic() - started)
    except TimeoutError:
        return Attempt(None, time.monotonic() - started, f"no answer within {timeout_s:g} s")
    except aiohttp.ClientError as e:
        return Attempt(None, time.monotonic() - started, f"{type(e).__name__}: {e}")


RetryWait = Callable[[int, Attempt], None]
"""Told before each wait for a retry: the number of the retry to come, and the attempt that failed."""


async def deliver(
    session: aiohttp.ClientSession,
    url: str,
    fields: Mapping[str, str],
    policy: RetryPolicy,
    bucket: TokenBucket | None = None,
    slots: asyncio.Semaphore | None = None,
    on_retry_wait: RetryWait | None = None,
) -> tuple[Attempt, ...]:
    """POST until delivered, at most 1 + `policy.retries` times, `policy.interval_s` apart.

    `slots` bounds the requests in flight; the wait for one is not part of an attempt's latency or timeout.
    """
    attempts: list[Attempt] = []
    for attempt_number in range(policy.retries + 1):
        if attempt_number:
            if on_retry_wait is not None:
                on_retry_wait(attempt_number, attempts[-1])
            await asyncio.sleep(policy.interval_s)
        if bucket:
            await bucket.acquire()
        async with slots or contextlib.nullcontext():
            attempt = await post_once(session, url, fields, policy.timeout_s)
        attempts.append(attempt)
        if attempt.delivered:
            break
    return tuple(attempts)


@dataclass
class ScenarioCounts:
    sent: int = 0
    accepted: int = 0
    retried: int = 0
    failed: int = 0


@dataclass
class Summary:
    """Totals by scenario and the latency of every answered attempt."""

    by_scenario: dict[str, ScenarioCounts] = field(default_factory=lambda: defaultdict(ScenarioCounts))
    latencies_s: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    failures: list[DeliveryOutcome] = field(default_factory=list)
    orders: dict[str, str] = field(default_factory=dict)
    """Every order id sent, with its scenario, in the order first sent: what to look up afterwards."""

    def add(self, outcome: DeliveryOutcome) -> None:
        self.orders.setdefault(outcome.delivery.order_id, outcome.delivery.scenario)
        counts = self.by_scenario[outcome.delivery.scenario]
        counts.sent += 1
        counts.accepted += outcome.delivered
        counts.retried += len(outcome.attempts) > 1
        counts.failed += not outcome.delivered
        if outcome.delivery.session is None:  # a registered session is not an HTTP round trip
            self.latencies_s.extend(a.latency_s for a in outcome.attempts if a.status is not None)
        if not outcome.delivered:
            self.failures.append(outcome)

    @property
    def total(self) -> ScenarioCounts:
        total = ScenarioCounts()
        for counts in self.by_scenario.values():
            total.sent += counts.sent
            total.accepted += counts.accepted
            total.retried += counts.retried
            total.failed += counts.failed
        return total

    def percentile_ms(self, fraction: float) -> float | None:
        """Nearest-rank percentile of the answered attempts' latency, in milliseconds."""
        if not self.latencies_s:
            return None
        ordered = sorted(self.latencies_s)
        return 1000 * ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]

    def as_json(self) -> dict[str, Any]:
        return {
            "by_scenario": {name: vars(counts) for name, counts in sorted(self.by_scenario.items())},
            "total": vars(self.total),
            "latency_ms": {"p50": self.percentile_ms(0.50), "p99": self.percentile_ms(0.99)},
            "elapsed_s": round(self.elapsed_s, 3),
            "orders": [{"order_id": order, "scenario": scenario} for order, scenario in self.orders.items()],
            "failures": [
                {
                    "scenario": o.delivery.scenario,
                    "step": o.delivery.step,
                    "order_id": o.delivery.order_id,
                    "attempts": [a.status or a.error for a in o.attempts],
                }
                for o in self.failures
            ],
        }


SessionRegistrar = Callable[[PendingPayment], Awaitable[bool]]
"""Registers a silent session for expiry watch; False when it could not."""


def payment_chains(deliveries: Iterable[Delivery]) -> list[list[Delivery]]:
    """The deliveries grouped by payment (order id), each group in its original order."""
    chains: dict[str, list[Delivery]] = {}
    for delivery in deliveries:
        chains.setdefault(delivery.order_id, []).append(delivery)
    return list(chains.values())


async def play(
    url: str,
    deliveries: Iterable[Delivery],
    *,
    policy: RetryPolicy | None = None,
    rate: float | None = None,
    concurrency: int = 100,
    register_session: SessionRegistrar | None = None,
    on_outcome: Callable[[DeliveryOutcome], None] | None = None,
    settle: Callable[[Delivery], Awaitable[None]] | None = None,
    on_retry_wait: Callable[[Delivery, int, Attempt], None] | None = None,
    ssl: SSLContext | bool = True,
) -> Summary:
    """Deliver everything; a silent session is registered through `register_session` and never notified.

    `settle(delivery)`, when given, is awaited after each delivered notification before the next one of
    the same payment: the demo waits there until the worker has applied it, as the platform's notifications
    of one payment come minutes apart. `on_retry_wait(delivery, retry, failed_attempt)` is told before each
    wait for a retry. `ssl`: aiohttp's (a context with a CA bundle, or False not to verify the certificate).
    """
    policy = policy or RetryPolicy()
    bucket = TokenBucket(rate) if rate else None
    summary = Summary()
    slots = asyncio.Semaphore(concurrency)
    started = time.monotonic()

    async def run_chain(session: aiohttp.ClientSession, chain: list[Delivery]) -> None:
        for delivery in chain:
            if delivery.session is not None:
                attempts: tuple[Attempt, ...] = (Attempt(None, 0.0, "session not registered"),)
                if register_session is not None and await register_session(delivery.session):
                    attempts = (Attempt(200, 0.0),)
            else:
                told = functools.partial(on_retry_wait, delivery) if on_retry_wait is not None else None
                attempts = await deliver(session, url, delivery.fields, policy, bucket, slots, told)
            outcome = DeliveryOutcome(delivery, attempts)
            summary.add(outcome)
            if on_outcome:
                on_outcome(outcome)
            if settle is not None and outcome.delivered and delivery.session is None:
                await settle(delivery)

    connector = aiohttp.TCPConnector(limit=concurrency, ssl=ssl)
    async with aiohttp.ClientSession(connector=connector) as session, asyncio.TaskGroup() as tasks:
        for chain in payment_chains(deliveries):
            tasks.create_task(run_chain(session, chain))
    summary.elapsed_s = time.monotonic() - started
    return summary
