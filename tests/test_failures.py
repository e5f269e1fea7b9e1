"""The retry-or-park policy, through a real arq Worker in burst mode on the real test Redis."""

from __future__ import annotations

import asyncio
from typing import Any

from arq.connections import ArqRedis
from arq.worker import Worker, func
from redis.exceptions import ConnectionError as RedisConnectionError

from schemas import job as job_schema
from schemas.job import PROCESS_NOTIFICATION
from schemas.notification import InvalidNotification
from schemas.settings import Settings, ShopConfig
from tests.notifications import notification, queued
from workers import failed_store
from workers.context import WorkerContext
from workers.failures import PARK_MARGIN_S, JobHandler, backoff_s, notification_function, with_failure_policy
from workers.metrics import WorkerMetrics
from workers.worker import build_worker

PAYLOAD = {
    "fields": {"vads_site_id": "12345678", "vads_order_id": "CMD-1", "vads_trans_id": "abc123"},
    "received_at": "2026-01-01T00:00:00Z",
    "client_ip": "127.0.0.1",
    "request_id": "r1",
}


async def run_burst(pool: ArqRedis, settings: Settings, handler: JobHandler) -> Worker:
    """Drain the queue with one burst worker whose only function is `handler` under the policy."""
    worker = Worker(
        functions=[
            func(
                with_failure_policy(handler, backoff_base_s=0.05),  # type: ignore[arg-type]  # arq's Protocol wants *args
                name=PROCESS_NOTIFICATION,
                max_tries=settings.max_tries + 10,
            )
        ],
        redis_pool=pool,
        queue_name=settings.queue_name,
        burst=True,
        poll_delay=0,
        handle_signals=False,
        job_serializer=job_schema.dumps,
        job_deserializer=job_schema.loads,
        ctx={"settings": settings, "metrics": WorkerMetrics()},
    )
    await worker.main()
    await worker.close()
    return worker


async def enqueue(pool: ArqRedis, settings: Settings, job_id: str, payload: Any = PAYLOAD) -> None:
    job = await pool.enqueue_job(
        PROCESS_NOTIFICATION, payload, _job_id=job_id, _queue_name=settings.queue_name
    )
    assert job is not None


async def test_transient_redis_error_is_retried_and_then_succeeds(pool: ArqRedis, settings: Settings) -> None:
    """A Redis ConnectionError on the first try is retried by arq; the second try succeeds, nothing parked."""
    tries: list[int] = []

    async def handler(ctx: WorkerContext, payload: Any) -> str:
        tries.append(ctx["job_try"])
        if len(tries) == 1:
            raise RedisConnectionError("Redis went away")
        return "applied"

    await enqueue(pool, settings, "ipn:transient")
    worker = await run_burst(pool, settings, handler)
    assert tries == [1, 2]
    assert (worker.jobs_retried, worker.jobs_complete, worker.jobs_failed) == (1, 1, 0)
    assert await failed_store.count(pool) == 0


async def test_transient_error_every_time_is_parked_after_max_tries(
    pool: ArqRedis, settings: Settings
) -> None:
    """A job failing transiently on every try runs max_tries times, is parked, and completes for arq."""
    settings = settings.model_copy(update={"max_tries": 3})
    calls: list[int] = []

    async def handler(ctx: WorkerContext, payload: Any) -> None:
        calls.append(ctx["job_try"])
        raise TimeoutError("Redis did not answer")

    await enqueue(pool, settings, "ipn:always-down")
    worker = await run_burst(pool, settings, handler)
    assert calls == [1, 2, 3]
    assert worker.jobs_failed == 0
    entry = await failed_store.get(pool, "ipn:always-down")
    assert entry is not None
    assert (entry.error_class, entry.tries, entry.parks) == ("TimeoutError", 3, 1)
    assert (entry.shop_id, entry.order_id, entry.trans_id) == ("12345678", "CMD-1", "abc123")


async def test_permanent_error_is_parked_at_once_without_retry(pool: ArqRedis, settings: Settings) -> None:
    """An InvalidNotification is parked on the first try, with its message and the raw payload."""
    calls: list[int] = []

    async def handler(ctx: WorkerContext, payload: Any) -> None:
        calls.append(ctx["job_try"])
        raise InvalidNotification("vads_payment_seq", "is not valid JSON")

    await enqueue(pool, settings, "ipn:bad-seq")
    worker = await run_burst(pool, settings, handler)
    assert calls == [1]
    assert worker.jobs_retried == 0
    entry = await failed_store.get(pool, "ipn:bad-seq")
    assert entry is not None
    assert entry.error_class == "InvalidNotification"
    assert "vads_payment_seq" in entry.error_message
    assert job_schema.loads(entry.payload.encode()) == PAYLOAD


async def test_a_job_whose_tries_all_died_with_their_worker_is_parked_not_run_again(
    pool: ArqRedis, settings: Settings
) -> None:
    """arq counted max_tries starts that never finished (each killed its worker): the next start parks it
    instead of running it again, so arq never drops it silently at its own limit."""
    calls: list[int] = []

    async def handler(ctx: WorkerContext, payload: Any) -> None:
        calls.append(ctx["job_try"])

    await enqueue(pool, settings, "ipn:poison")
    await pool.set(
        "arq:retry:ipn:poison", settings.max_tries
    )  # arq's try counter, as the killed tries left it
    await run_burst(pool, settings, handler)
    assert calls == []
    entry = await failed_store.get(pool, "ipn:poison")
    assert entry is not None and entry.error_class == "WorkerDied"
    assert entry.tries == settings.max_tries + 1


async def test_unexpected_bug_is_parked_with_its_traceback(pool: ArqRedis, settings: Settings) -> None:
    """A bug (KeyError) is not retried and not lost: parked with the traceback naming where it happened."""

    async def buggy_handler(ctx: WorkerContext, payload: Any) -> None:
        raise KeyError("vads_missing")

    await enqueue(pool, settings, "ipn:bug")
    await run_burst(pool, settings, buggy_handler)
    entry = await failed_store.get(pool, "ipn:bug")
    assert entry is not None
    assert entry.error_class == "KeyError"
    assert "buggy_handler" in entry.traceback
    assert entry.tries == 1


async def test_handler_timeout_is_retried_not_lost(pool: ArqRedis, settings: Settings) -> None:
    """A handler exceeding job_timeout_s is cut by the wrapper and retried; the next try succeeds."""
    settings = settings.model_copy(update={"job_timeout_s": 1})
    calls: list[int] = []

    async def slow_once(ctx: WorkerContext, payload: Any) -> str:
        calls.append(ctx["job_try"])
        if len(calls) == 1:
            await asyncio.sleep(5)
        return "applied"

    await enqueue(pool, settings, "ipn:slow")
    worker = await run_burst(pool, settings, slow_once)
    assert calls == [1, 2]
    assert worker.jobs_complete == 1
    assert await failed_store.count(pool) == 0


async def test_parking_the_same_notification_again_updates_its_entry(
    pool: ArqRedis, settings: Settings
) -> None:
    """A replay that fails again updates tries, parks and last failure time instead of adding an entry."""

    async def always_invalid(ctx: WorkerContext, payload: Any) -> None:
        raise InvalidNotification("vads_amount", "must be a whole number")

    await enqueue(pool, settings, "ipn:twice")
    await run_burst(pool, settings, always_invalid)
    first = await failed_store.get(pool, "ipn:twice")
    assert first is not None
    await enqueue(pool, settings, first.replay_job_id)
    await run_burst(pool, settings, always_invalid)
    second = await failed_store.get(pool, "ipn:twice")
    assert second is not None
    assert await failed_store.count(pool) == 1
    assert (second.tries, second.parks) == (2, 2)
    assert second.first_failed_at == first.first_failed_at
    assert second.last_failed_at > first.last_failed_at
    assert second.replay_job_id != first.replay_job_id


async def test_replayed_job_that_succeeds_leaves_the_store(pool: ArqRedis, settings: Settings) -> None:
    """The wrapper recognises `replay:<id>:<n>` and removes entry <id> once the replay succeeds."""
    fixed = False

    async def handler(ctx: WorkerContext, payload: Any) -> str:
        if not fixed:
            raise InvalidNotification("vads_site_id", "unknown shop")
        return "applied"

    await enqueue(pool, settings, "ipn:fixme")
    await run_burst(pool, settings, handler)
    entry = await failed_store.get(pool, "ipn:fixme")
    assert entry is not None
    fixed = True
    await enqueue(pool, settings, entry.replay_job_id)
    await run_burst(pool, settings, handler)
    assert await failed_store.get(pool, "ipn:fixme") is None
    assert await failed_store.count(pool) == 0


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    """Each try waits between half and all of base*2^(try-1), never more than the cap."""
    for job_try in range(1, 12):
        ceiling = min(300.0, 2.0 * 2 ** (job_try - 1))
        delays = {backoff_s(job_try) for _ in range(20)}
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(delays) > 1


def test_registration_leaves_arq_room_to_park(settings: Settings) -> None:
    """arq's own timeout and max_tries exceed the policy's, so arq never ends a job the wrapper should park."""

    async def handler(ctx: WorkerContext, payload: Any) -> None:
        return None

    function = notification_function(handler, settings)
    assert function.name == PROCESS_NOTIFICATION
    assert function.timeout_s is not None and function.timeout_s > settings.job_timeout_s
    assert function.max_tries is not None and function.max_tries > settings.max_tries


async def test_real_worker_parks_bad_payloads_and_bad_payment_seq_at_once(
    pool: ArqRedis, settings: Settings, shop: ShopConfig
) -> None:
    """Through the deployed worker: a payload failing validation and a bad vads_payment_seq are parked on try 1."""
    bad_seq = queued(notification("AUTHORISED", extra={"vads_payment_seq": "{not json"}), shop)
    await pool.enqueue_job(
        PROCESS_NOTIFICATION,
        bad_seq.model_dump(mode="json"),
        _job_id="ipn:bad-seq",
        _queue_name=settings.queue_name,
    )
    await pool.enqueue_job(
        PROCESS_NOTIFICATION, {"nope": 1}, _job_id="ipn:garbage", _queue_name=settings.queue_name
    )
    worker = build_worker(settings, burst=True, poll_delay=0, handle_signals=False)
    await worker.main()
    await worker.close()
    assert (worker.jobs_retried, worker.jobs_failed) == (0, 0)
    seq_entry = await failed_store.get(pool, "ipn:bad-seq")
    garbage = await failed_store.get(pool, "ipn:garbage")
    assert seq_entry is not None and garbage is not None
    assert (seq_entry.error_class, seq_entry.tries) == ("InvalidNotification", 1)
    assert "vads_payment_seq" in seq_entry.error_message
    assert (garbage.error_class, garbage.tries, garbage.shop_id) == ("ValidationError", 1, "")


async def test_crons_do_not_delay_the_recovery_of_a_killed_workers_jobs(settings: Settings) -> None:
    """arq holds orphaned jobs for the longest function timeout + 10 s: the crons never raise that bound."""
    worker = build_worker(settings, handle_signals=False)
    assert worker.in_progress_timeout_s == settings.job_timeout_s + PARK_MARGIN_S + 10
    assert {"cvco_session_expiry", "cvco_alert_sender", "cvco_checks"} <= set(worker.functions)
    await worker.close()
