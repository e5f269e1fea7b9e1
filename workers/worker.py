"""The arq worker: its options, built from `Settings`.

`worker_options(settings)` returns the flat keyword arguments of `arq.worker.Worker` (arq ignores
inherited class attributes, so there is no base class to subclass); `build_worker(settings, **overrides)`
makes the worker, a `ClaimingWorker` (arq's, claiming and starting the jobs of a poll in one round trip
and ending them together: workers/arq_adapter.py), on arq's client over the shared connection set-up
(`redis_pool=`). Stock arq workers stay compatible on the same queue.

`worker_options` registers `process_notification` (workers/payment_updates.py) wrapped in the
retry-or-park policy (workers/failures.py), and adds the cron jobs of workers/monitoring.py
(session-expiry sweep, alert sender, signature-burst and queue-age checks).
"""

from __future__ import annotations

import gc
from typing import Any, cast

import structlog
from arq.connections import ArqRedis
from arq.cron import CronJob
from arq.worker import Function, Worker

from core.redis_connection import redis_client
from schemas.job import dumps, loads
from schemas.settings import Settings
from workers.apply import StateWriter
from workers.arq_adapter import ClaimingWorker
from workers.context import WorkerContext
from workers.failures import notification_function
from workers.metrics import WorkerMetrics
from workers.monitoring import alert_on_outcome, scheduled_jobs
from workers.payment_updates import process_notification

log = structlog.get_logger("cvco.worker")

KEEP_RESULT_S = 60
"""Kept although it costs a SET (in the finishing script, no extra round trip): while a result lives, arq
refuses an identical job id, so the receiver collapses an exact resend without a job, and the demo waits on
result keys. Without it a resend would run again and end as a `duplicate` (no event): safe, but a job.
What it holds is the job's outcome, never the notification (`dump_result`)."""
HEALTH_CHECK_INTERVAL_S = 10
POLL_DELAY_S = 0.01
"""An idle queue is polled every 10 ms: arq's 0.5 s default alone would put the p99 near half a second."""
MAX_JOBS = 50
"""Jobs in flight per worker: arq starts jobs only at a poll, so its default (10) caps the rate."""
JOB_COMPLETION_WAIT_S = 20
"""On SIGTERM, finish the jobs in hand for this long (below the orchestrator's grace period) and take no more."""


async def _on_job_start(ctx: WorkerContext) -> None:
    # each arq job runs in its own task, whose context arq copies from here
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(job_id=ctx.get("job_id"), job_try=ctx.get("job_try"))


async def _on_startup(ctx: WorkerContext) -> None:
    # the jobs running at once write their payments' states together, on arq's client
    ctx["state_writer"] = StateWriter.for_settings(ctx["redis"], ctx["settings"])
    # what is alive now (modules, pydantic's validators, settings) lives as long as the process: out of
    # the collector's sight, a full collection walks only what jobs allocate
    gc.freeze()
    log.info("worker_started", queue=ctx["settings"].queue_name)  # Redis answered: arq has connected


def dump_result(result: dict[str, Any]) -> bytes:
    """arq's result record without the job's arguments: a copy of the whole notification (2-3 KB, signature
    included) for `KEEP_RESULT_S` that nothing reads; the parked-job store keeps its own when it fails."""
    return dumps({**result, "a": (), "k": {}})


def arq_client(settings: Settings, *, socket_timeout_s: float | None) -> ArqRedis:
    """arq's client on the deployment's Redis (`redis_client`), set up as `arq.create_pool` sets it."""
    pool = cast(ArqRedis, redis_client(settings, socket_timeout_s=socket_timeout_s, client_class=ArqRedis))
    pool.job_serializer = dumps
    pool.job_deserializer = loads
    pool.default_queue_name = settings.queue_name
    return pool


def worker_options(
    settings: Settings, *, metrics: WorkerMetrics | None = None, **overrides: Any
) -> dict[str, Any]:
    """Keyword arguments of `arq.worker.Worker` for this deployment; `overrides` win (burst, poll_delay...).

    `metrics`: what the jobs count into (`cvco-ipn worker` keeps one across the workers it restarts).
    """
    # retry transient errors, park the rest, alert on outcomes
    functions: list[Function] = [
        notification_function(process_notification, settings, on_outcome=alert_on_outcome)
    ]
    # session-expiry sweep, alert sender, signature-burst and queue-age checks
    cron_jobs: list[CronJob] = scheduled_jobs(settings)
    options: dict[str, Any] = {
        "functions": functions,
        "cron_jobs": cron_jobs,
        "queue_name": settings.queue_name,
        "redis_pool": arq_client(settings, socket_timeout_s=None),
        "job_serializer": dump_result,  # a worker serializes only results with it
        "job_deserializer": loads,
        "job_timeout": settings.job_timeout_s,
        "max_tries": settings.max_tries,
        "keep_result": KEEP_RESULT_S,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "poll_delay": POLL_DELAY_S,
        "max_jobs": MAX_JOBS,
        "job_completion_wait": JOB_COMPLETION_WAIT_S,
        "on_startup": _on_startup,
        "on_job_start": _on_job_start,
        # results are words ("published"...) and job arguments hold signatures: arq must not log them
        "log_results": False,
        "ctx": {"settings": settings, "metrics": metrics or WorkerMetrics()},
    }
    options.update(overrides)
    return options


def build_worker(settings: Settings, *, metrics: WorkerMetrics | None = None, **overrides: Any) -> Worker:
    """An arq `Worker` for this deployment (tests: `build_worker(s, burst=True, poll_delay=0, ...)`)."""
    return ClaimingWorker(**worker_options(settings, metrics=metrics, **overrides))
