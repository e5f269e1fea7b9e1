"""The simulator delivers as the platform does: success by HTTP status alone, timeouts fail, retries bounded."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp import web
from redis.asyncio import Redis

from core.keys import SESSIONS_KEY
from core.sessions import track_session
from core.signature import verify_signature
from schemas.session import PendingPayment
from schemas.settings import ShopConfig
from simulator.deliver import SUCCESS_STATUSES, RetryPolicy, TokenBucket, deliver, play
from simulator.scenarios import build_scenario
from tests.conftest import SHOP_ID, TEST_KEY, free_port

FAST = RetryPolicy(timeout_s=1.0, retries=4, interval_s=0.01)


@dataclass
class StandIn:
    """A local notification URL whose answers the test scripts; it records every received form."""

    url: str
    answers: list[int | float] = field(default_factory=list)  # an int is a status, a float a delay first
    received: list[dict[str, str]] = field(default_factory=list)
    redirect_target_hits: int = 0

    def script(self, *answers: int | float) -> None:
        self.answers[:] = answers


@pytest.fixture
async def stand_in() -> AsyncIterator[StandIn]:
    port = free_port()
    server = StandIn(f"http://127.0.0.1:{port}/ipn")

    async def ipn(request: web.Request) -> web.Response:
        form = await request.post()
        server.received.append({name: str(value) for name, value in form.items()})
        answer = server.answers.pop(0) if len(server.answers) > 1 else (server.answers or [200])[0]
        if isinstance(answer, float):
            await asyncio.sleep(answer)
            answer = 200
        headers = {"Location": "/elsewhere"} if 300 <= answer < 400 else None
        return web.Response(status=answer, text="OK" if answer < 300 else "KO", headers=headers)

    async def elsewhere(request: web.Request) -> web.Response:
        server.redirect_target_hits += 1
        return web.Response(status=500)

    app = web.Application()
    app.router.add_post("/ipn", ipn)
    app.router.add_route("*", "/elsewhere", elsewhere)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield server
    await runner.cleanup()


async def _deliver(stand_in: StandIn, policy: RetryPolicy = FAST) -> tuple[int | None, int]:
    async with aiohttp.ClientSession() as session:
        attempts = await deliver(session, stand_in.url, {"vads_site_id": SHOP_ID, "signature": "x"}, policy)
    return attempts[-1].status, len(attempts)


@pytest.mark.parametrize("status", sorted(SUCCESS_STATUSES))
async def test_each_platform_success_status_is_delivered_at_the_first_attempt(
    stand_in: StandIn, status: int
) -> None:
    """200–206, 301–303, 307 and 308 count as delivered; a redirect is not followed."""
    stand_in.script(status)
    assert await _deliver(stand_in) == (status, 1)
    assert stand_in.redirect_target_hits == 0


@pytest.mark.parametrize("status", [207, 300, 304, 400, 401, 403, 404, 413, 500, 502, 503])
async def test_any_other_status_is_a_failure_retried_exactly_the_allowed_number_of_times(
    stand_in: StandIn, status: int
) -> None:
    """A non-success answer is retried, 1 + retries attempts in all, then given up."""
    stand_in.script(status)
    assert await _deliver(stand_in) == (status, 5)
    assert len(stand_in.received) == 5
    stand_in.received.clear()
    assert await _deliver(stand_in, RetryPolicy(timeout_s=1.0, retries=0, interval_s=0.01)) == (status, 1)


async def test_no_answer_within_the_timeout_is_a_failure(stand_in: StandIn) -> None:
    """A receiver slower than the timeout fails the attempt; the next, prompt answer delivers."""
    stand_in.script(0.6, 0.6, 200)
    started = time.monotonic()
    status, attempts = await _deliver(stand_in, RetryPolicy(timeout_s=0.3, retries=4, interval_s=0.01))
    assert (status, attempts) == (200, 3)
    assert time.monotonic() - started < 1.5


async def test_retries_wait_the_interval_and_stop_at_the_first_success(stand_in: StandIn) -> None:
    """Two failures then 200: three attempts, at least two intervals apart in all."""
    stand_in.script(503, 500, 200, 500)
    started = time.monotonic()
    assert await _deliver(stand_in, RetryPolicy(timeout_s=1.0, retries=4, interval_s=0.2)) == (200, 3)
    assert time.monotonic() - started >= 0.4


async def test_the_receiver_gets_the_exact_signed_fields_utf8_and_blanks_included(
    stand_in: StandIn, shop: ShopConfig
) -> None:
    """Form-urlencoded UTF-8: what arrives verifies with the shop key, blank and accented values intact."""
    deliveries = build_scenario("cascade", SHOP_ID, shop, "TEST", random.Random(1), datetime.now(UTC))
    summary = await play(stand_in.url, deliveries, policy=FAST)
    assert summary.total.accepted == 1
    (received,) = stand_in.received
    assert received == dict(deliveries[0].fields)
    signature = received.pop("signature")
    assert verify_signature(received, signature, shop) == "valid"


async def test_play_summarises_by_scenario_and_records_silent_sessions_in_redis(
    stand_in: StandIn, shop: ShopConfig, redis: Redis
) -> None:
    """Counts per scenario, retried and finally failed deliveries, latencies, and the registered session."""
    now = datetime.now(UTC)
    rng = random.Random(2)
    deliveries = [
        *build_scenario("capture", SHOP_ID, shop, "TEST", rng, now),
        *build_scenario("silent", SHOP_ID, shop, "TEST", rng, now),
    ]
    stand_in.script(503, 200, 500)  # the capture's first try fails, then 200, then every later one fails

    async def register(pending: PendingPayment) -> bool:
        return await track_session(redis, pending)

    summary = await play(stand_in.url, deliveries, policy=FAST, register_session=register)
    capture, silent = summary.by_scenario["capture"], summary.by_scenario["silent"]
    assert (capture.sent, capture.accepted, capture.retried, capture.failed) == (2, 1, 2, 1)
    assert (silent.sent, silent.accepted, silent.failed) == (1, 1, 0)
    assert len(summary.latencies_s) == 2 + 5
    assert summary.as_json()["failures"][0]["attempts"] == [500] * 5
    session = deliveries[-1].session
    assert session is not None and await redis.zscore(SESSIONS_KEY, session.key) is not None


async def test_the_token_bucket_holds_the_rate() -> None:
    """At 50/s, 26 acquisitions after the short burst take about half a second."""
    bucket = TokenBucket(50)
    started = time.monotonic()
    for _ in range(26):
        await bucket.acquire()
    assert 0.4 <= time.monotonic() - started < 1.0


async def _simulate(url: str, *flags: str) -> tuple[int, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CVCO_")}
    environment["CVCO_SHOPS"] = json.dumps({SHOP_ID: {"test_key": TEST_KEY, "modes": ["TEST"]}})
    environment["CVCO_REDIS_URL"] = os.environ.get("CVCO_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli.main", "simulate", "--url", url, *flags,
        stdout=asyncio.subprocess.PIPE, env=environment,
    )  # fmt: skip
    stdout, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stdout.decode()


async def test_simulate_command_exits_0_with_a_json_summary_when_all_is_delivered(stand_in: StandIn) -> None:
    """`cvco-ipn simulate --json` prints sent/accepted per scenario and exits 0."""
    code, out = await _simulate(
        stand_in.url,
        "--scenario",
        "refund",
        "--scenario",
        "duplicates",
        "--count",
        "2",
        "--seed",
        "1",
        "--json",
    )
    summary = json.loads(out)
    assert code == 0
    assert summary["by_scenario"]["refund"] == {"sent": 6, "accepted": 6, "retried": 0, "failed": 0}
    assert summary["total"]["sent"] == len(stand_in.received) == 6 + 8
    assert summary["latency_ms"]["p99"] >= summary["latency_ms"]["p50"] > 0


async def test_simulate_command_exits_non_zero_when_a_delivery_finally_fails(stand_in: StandIn) -> None:
    """A receiver that keeps answering 500 makes the run fail after the bounded retries."""
    stand_in.script(500)
    code, out = await _simulate(
        stand_in.url, "--scenario", "cvco-full", "--retries", "2", "--retry-interval", "0.01", "--json"
    )
    assert code == 1
    assert json.loads(out)["total"] == {"sent": 1, "accepted": 0, "retried": 1, "failed": 1}
    assert len(stand_in.received) == 3
