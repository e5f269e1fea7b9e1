"""The arq worker: its options, built from `Settings`, and the `process_notification` job.

`worker_options(settings)` returns the flat keyword arguments of `arq.worker.Worker` (arq ignores
inherited class attributes, so there is no base class to subclass); `build_worker(settings, **overrides)`
makes the worker, a `ClaimingWorker` (arq's, with a one-round-trip job claim). Stock arq workers stay
compatible on the same queue.

`worker_options` wraps the job in the retry-or-park policy (workers/failures.py) and adds the cron jobs
of workers/watch.py (session-expiry sweep, alert sender, signature-burst and queue-age checks).
"""

from __future__ import annotations

import gc
import time
from typing import Any, TypedDict, cast

import structlog
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix
from arq.cron import CronJob
from arq.utils import timestamp_ms
from arq.worker import Function, Worker
from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from ingest.redis_connection import redis_client
from schemas.job import QueuedNotification, dumps, loads
from schemas.settings import Settings
from workers.failures import JobHandler, notification_function
from workers.jobs import handle_notification
from workers.watch import alert_on_outcome, scheduled_jobs

log = structlog.get_logger("cvco.worker")

KEEP_RESULT_S = 60
"""Kept although it costs a SET (in arq's finishing MULTI, no extra round trip): while a result lives, arq
refuses an identical job id, so the receiver collapses an exact resend without a job, and the demo waits on
result keys. Without it a resend would run again and end as a `duplicate` (no event): safe, but a job.
What it holds is the job's outcome, never the notification (`dump_result`)."""
HEALTH_CHECK_INTERVAL_S = 10
POLL_DELAY_S = 0.01
"""An idle queue is polled every 10 ms (arq's 0.5 s default would alone put p99 near half a second; 50 ms
put p50 near 50 ms): one ZRANGEBYSCORE, about 1 % of a core when idle; a busy worker polls back to back."""
MAX_JOBS = 50
"""Jobs in flight per worker. arq starts new jobs only at a poll, and stops starting once `max_jobs` are in
flight: its default (10) capped a worker near 10 jobs per poll delay, whatever its CPU could do."""
JOB_COMPLETION_WAIT_S = 20
"""On SIGTERM, finish the jobs in hand for this long (below the orchestrator's grace period) and take no more."""


class WorkerContext(TypedDict, total=False):
    """The keys of arq's `ctx`: arq's own (`redis`, `job_id`, `job_try`, ...) and the worker's settings."""

    redis: ArqRedis
    settings: Settings
    job_id: str
    job_try: int
    enqueue_time: Any
    score: int


async def process_notification(ctx: WorkerContext, payload: dict[str, Any]) -> dict[str, Any]:
    """The arq job: re-validate the queued JSON, then `handle_notification`.

    Returns `{"result": "published"|"duplicate"|"stale", "payment_key": ..., "flags": [...]}`, which the
    alert hook reads instead of loading the payment again.

    One summary line per job; `trans_uuid`, `order_id` and `shop_id` are bound for every line it logs.
    """
    started = time.perf_counter()
    queued = QueuedNotification.model_validate(payload)
    fields = queued.fields
    structlog.contextvars.bind_contextvars(
        trans_uuid=fields.get("vads_trans_uuid"),
        order_id=fields.get("vads_order_id"),
        shop_id=fields.get("vads_site_id"),
    )
    try:
        outcome = await handle_notification(ctx["redis"], ctx["settings"], queued)
    except Exception as e:
        log.warning(
            "job failed",
            error=f"{type(e).__name__}: {e}",
            job_try=ctx.get("job_try"),
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        raise
    log.info(
        "job done",
        result=outcome.result,
        event_type=outcome.event_type,
        event_id=outcome.event_id,
        phase=outcome.phase,
        flags=list(outcome.flags),
        ms=round((time.perf_counter() - started) * 1000, 1),
    )
    return {"result": outcome.result, "payment_key": outcome.payment_key, "flags": list(outcome.flags)}


async def _on_job_start(ctx: WorkerContext) -> None:
    # each arq job runs in its own task, whose context arq copies from here
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(job_id=ctx.get("job_id"), job_try=ctx.get("job_try"))


# KEYS: the queue, then the in-progress key of each job. ARGV: now (ms), in-progress timeout (ms), job ids.
# Returns, per job, its score if claimed, else false (running elsewhere, gone from the queue, or deferred).
_CLAIM = """
local now = tonumber(ARGV[1])
local claimed = {}
for i = 2, #KEYS do
  local score = false
  if redis.call('EXISTS', KEYS[i]) == 0 then
    score = redis.call('ZSCORE', KEYS[1], ARGV[i + 1])
    if score and tonumber(score) <= now then
      redis.call('PSETEX', KEYS[i], ARGV[2], '1')
    else
      score = false
    end
  end
  claimed[i - 1] = score
end
return claimed
"""


class ClaimingWorker(Worker):
    """arq's `Worker`, claiming the jobs of a poll in one Lua call instead of four round trips each.

    arq 0.28 claims each job with WATCH, EXISTS, ZSCORE, then MULTI/PSETEX/EXEC: four round trips per job,
    one after the other in the polling loop, each costing the worker about as much CPU as a whole
    `decide`. `_CLAIM` makes the same checks and the same write, atomically for each job (not in progress,
    still queued, not deferred; then the in-progress key with arq's own timeout), for as many jobs as
    `max_jobs` leaves room for: a claim still excludes any other worker, stock arq ones included.
    Everything after the claim is arq's own `run_job`. Its pool is `redis_client`'s, as every process's
    (packing in C; Sentinel when configured): arq's ten or so commands per job and the state writes.
    """

    _claim: AsyncScript | None = None

    async def main(self) -> None:
        if self._pool is None:
            settings: Settings = self.ctx["settings"]
            # no per-command timeout, as arq's own pool: redis-py's timeout path can swallow a cancellation
            self._pool = arq_client(settings, socket_timeout_s=None)
        # what is alive now (modules, pydantic's validators, settings) lives as long as the process: out of
        # the collector's sight, a full collection walks only what jobs allocate (10-30 ms each otherwise)
        gc.freeze()
        await super().main()

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        if self._claim is None:
            self._claim = self.pool.register_script(_CLAIM)
        timeout_ms = int(self.in_progress_timeout_s * 1000)
        waiting = [job_id.decode() for job_id in job_ids]
        while waiting:
            room = self.max_jobs - self.job_counter
            if room <= 0:
                return  # as arq does: the next poll starts more
            batch, waiting = waiting[:room], waiting[room:]
            keys = [self.queue_name, *(in_progress_key_prefix + job_id for job_id in batch)]
            try:
                scores = await self._claim(keys=keys, args=[timestamp_ms(), timeout_ms, *batch])
            except ResponseError as e:  # as arq treats a failed MULTI: leave the jobs to a later poll
                log.warning("job_claim_failed", jobs=len(batch), reason=str(e))
                return
            for job_id, score in zip(batch, scores, strict=True):
                if score is None:
                    continue
                await self.sem.acquire()  # never waits: `room` permits are free
                self.job_counter += 1
                task = self.loop.create_task(self.run_job(job_id, int(float(score))))
                task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
                self.tasks[job_id] = task


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


def worker_options(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments of `arq.worker.Worker` for this deployment; `overrides` win (burst, poll_delay...)."""
    # retry transient errors, park the rest, alert on outcomes
    handler: JobHandler = process_notification  # type: ignore[assignment]  # arq's protocol types ctx as dict
    functions: list[Function] = [notification_function(handler, settings, on_outcome=alert_on_outcome)]
    # session-expiry sweep, alert sender, signature-burst and queue-age checks
    cron_jobs: list[CronJob] = scheduled_jobs(settings)
    options: dict[str, Any] = {
        "functions": functions,
        "cron_jobs": cron_jobs,
        "queue_name": settings.queue_name,
        "job_serializer": dump_result,  # a worker serializes only results with it
        "job_deserializer": loads,
        "job_timeout": settings.job_timeout_s,
        "max_tries": settings.max_tries,
        "keep_result": KEEP_RESULT_S,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "poll_delay": POLL_DELAY_S,
        "max_jobs": MAX_JOBS,
        "job_completion_wait": JOB_COMPLETION_WAIT_S,
        "on_job_start": _on_job_start,
        # results are words ("published"...) and job arguments hold signatures: arq must not log them
        "log_results": False,
        "ctx": {"settings": settings},
    }
    options.update(overrides)
    return options


def build_worker(settings: Settings, **overrides: Any) -> Worker:
    """An arq `Worker` for this deployment (tests: `build_worker(s, burst=True, poll_delay=0, ...)`)."""
    return ClaimingWorker(**worker_options(settings, **overrides))
