"""The one place that relies on arq's internals: the claim and start of all the jobs of a poll in one round
trip (arq: five a job), and the writes of the jobs that finish together in one round trip (arq: one a job).

Pinned: arq 0.28 (`arq>=0.28,<0.29` in pyproject.toml). `tests/test_arq_adapter.py` fails loudly when an
upgrade changes what this relies on: `Worker.run_job`'s source (below, copied), `Worker.start_jobs(job_ids)`
as the step between a poll and `run_job(job_id, score)`, the `sem`, `job_counter`, `max_jobs`, `tasks` and
`_release_sem_dec_counter_on_complete` it keeps, and `Worker.finish_job`'s arguments and writes.

Why: arq 0.28 claims each polled job with WATCH, EXISTS, ZSCORE, then MULTI/PSETEX/EXEC, one job after the
other in the polling loop; each job's `run_job` then opens with a MULTI of its own (GET the job, INCR and
EXPIRE its try counter, ZREM it from the abort set). `_CLAIM` makes the same checks and the same writes,
atomically per job (not in progress, still queued, not deferred; then the in-progress key with arq's own
timeout, and the opening MULTI's writes), for as many jobs as `max_jobs` leaves room for, and answers
each job's data and try; a claim still excludes any other worker, stock arq ones included.
`ClaimingWorker.run_job` is arq's `run_job` copied as it is (arq is MIT-licensed, (c) Samuel Colvin and
contributors), but for that opening MULTI: arq has no hook between the two, and that MULTI alone cost
36-42 % of the notification job's CPU. A test compares the copy with arq's, statement by statement. arq
then ends each finished job with a MULTI of its own; `_FINISH` makes the same writes for all the jobs that
finished meanwhile (`workers.batches.Batcher`), atomically. A job retried or rescheduled, or a result kept
forever, still goes through arq's own `finish_job`.

Measured gain (tests/perf/bench_worker.py, the notification job against a no-op on arq's stock `Worker` in
the same run; the README's benchmark section has the runs): the claim alone, 2026-12-02, from 59-80 % to
98-118 %; the finish, 2026-12-07, from 70-79 % to 67-88 % (without it today: 95 %); the start in the claim,
2026-12-07, from 78-90 % to 123-124 %.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from arq.constants import (
    abort_jobs_ss,
    in_progress_key_prefix,
    job_key_prefix,
    keep_cronjob_progress,
    result_key_prefix,
    retry_key_prefix,
)
from arq.cron import CronJob
from arq.jobs import SerializationError, deserialize_job_raw, serialize_result
from arq.utils import args_to_string, ms_to_datetime, timestamp_ms, to_ms, truncate
from arq.worker import Function, JobExecutionFailed, Retry, RetryJob, Worker, logger, no_result
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError, ResponseError

from workers.batches import Batcher

log = structlog.get_logger("cvco.worker")

# KEYS: the queue, arq's abort set, then per job its in-progress, job and retry keys. ARGV: now (ms),
# in-progress timeout (ms), the try counter's lifetime (s), '1' if the abort set counts, then the job ids.
# Returns, per job, false if not claimed (running elsewhere, gone from the queue, or deferred), else its
# score, data (false if gone), try and whether it was to be aborted (1 or 0), as arq's opening MULTI.
_CLAIM = """
local now = tonumber(ARGV[1])
local claimed = {}
for j = 0, (#KEYS - 2) / 3 - 1 do
  local k, id = 3 + 3 * j, ARGV[5 + j]
  local started = false
  if redis.call('EXISTS', KEYS[k]) == 0 then
    local score = redis.call('ZSCORE', KEYS[1], id)
    if score and tonumber(score) <= now then
      redis.call('PSETEX', KEYS[k], ARGV[2], '1')
      local try = redis.call('INCR', KEYS[k + 2])
      redis.call('EXPIRE', KEYS[k + 2], ARGV[3])
      local aborted = 0
      if ARGV[4] == '1' then
        aborted = redis.call('ZREM', KEYS[2], id)
      end
      started = {score, redis.call('GET', KEYS[k + 1]), try, aborted}
    end
  end
  claimed[j + 1] = started
end
return claimed
"""
_RETRY_KEY_TTL_S = 88400
"""How long arq 0.28's `run_job` keeps a job's try counter."""

# KEYS: the queue, arq's abort set, then per job its in-progress, retry, job and result keys.
# ARGV: per job its id, its result ('' for none) and how long the result is kept (ms).
_FINISH = """
for j = 0, (#KEYS - 2) / 4 - 1 do
  local k, a = 3 + 4 * j, 1 + 3 * j
  redis.call('DEL', KEYS[k], KEYS[k + 1], KEYS[k + 2])
  redis.call('ZREM', KEYS[2], ARGV[a])
  redis.call('ZREM', KEYS[1], ARGV[a])
  if ARGV[a + 1] ~= '' then
    redis.call('SET', KEYS[k + 3], ARGV[a + 1], 'PX', ARGV[a + 2])
  end
end
return 0
"""

_FINISHED_KEYS = (in_progress_key_prefix, retry_key_prefix, job_key_prefix, result_key_prefix)
_Finished = tuple[str, bytes, int]
"""A finished job's id, result (empty for none) and result lifetime (ms)."""


class ClaimingWorker(Worker):
    """arq's `Worker`, claiming and starting the jobs of a poll in one Lua call and finishing the jobs that
    end together in another; in between, arq's `run_job`, copied without its opening MULTI."""

    _claim: AsyncScript | None = None
    _finish: AsyncScript | None = None
    _finishing: Batcher[_Finished, None] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._started: dict[str, tuple[bytes | None, int, int]] = {}
        """What the claim answered of each job whose `run_job` has not begun: its data, try and abort."""

    async def close(self) -> None:
        """arq's `close`, except that a Redis gone meanwhile does not make it raise.

        It deletes the health-check key (which expires anyway): with Redis down that raised, and `run()`
        raised it instead of returning, so a worker stopped by SIGTERM while Redis was away looked like one
        that lost Redis, and was started again. Losing Redis mid-run still raises, from the poll.
        """
        try:
            await super().close()
        except (RedisError, OSError) as e:
            log.warning("worker_closed_without_redis", error=type(e).__name__)

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        if self._claim is None:
            self._claim = self.pool.register_script(_CLAIM)
        constant = [int(self.in_progress_timeout_s * 1000), _RETRY_KEY_TTL_S, int(self.allow_abort_jobs)]
        waiting = [job_id.decode() for job_id in job_ids]
        while waiting:
            room = self.max_jobs - self.job_counter
            if room <= 0:
                return  # as arq does: the next poll starts more
            batch, waiting = waiting[:room], waiting[room:]
            keys = [self.queue_name, abort_jobs_ss]
            for job_id in batch:
                keys += [in_progress_key_prefix + job_id, job_key_prefix + job_id, retry_key_prefix + job_id]
            try:
                claimed = await self._claim(keys=keys, args=[timestamp_ms(), *constant, *batch])
            except ResponseError as e:  # as arq treats a failed MULTI: leave the jobs to a later poll
                log.warning("job_claim_failed", jobs=len(batch), reason=str(e))
                return
            for job_id, started in zip(batch, claimed, strict=True):
                if started is None:
                    continue
                score, data, job_try, aborted = started
                self._started[job_id] = (data, job_try, aborted)
                await self.sem.acquire()  # never waits: `room` permits are free
                self.job_counter += 1
                task = self.loop.create_task(self.run_job(job_id, int(float(score))))
                task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
                self.tasks[job_id] = task

    async def run_job(self, job_id: str, score: int) -> None:  # noqa: C901  # arq's, see the docstring
        """arq 0.28's `Worker.run_job` as it is, but for its opening MULTI (GET the job, INCR and EXPIRE its
        try counter, ZREM it from the abort set), which `_CLAIM` made for this job already."""
        start_ms = timestamp_ms()
        v, job_try, abort_job = self._started.pop(job_id)  # arq's opening MULTI, done by the claim

        function_name, enqueue_time_ms = "<unknown>", 0
        args: tuple[Any, ...] = ()
        kwargs: dict[Any, Any] = {}

        async def job_failed(exc: BaseException) -> None:
            self.jobs_failed += 1
            result_data_ = serialize_result(
                function=function_name,
                args=args,
                kwargs=kwargs,
                job_try=job_try,
                enqueue_time_ms=enqueue_time_ms,
                success=False,
                result=exc,
                start_ms=start_ms,
                finished_ms=timestamp_ms(),
                ref=f"{job_id}:{function_name}",
                serializer=self.job_serializer,
                queue_name=self.queue_name,
                job_id=job_id,
            )
            await asyncio.shield(self.finish_failed_job(job_id, result_data_))

        if not v:
            logger.warning("job %s expired", job_id)
            return await job_failed(JobExecutionFailed("job expired"))

        try:
            function_name, args, kwargs, enqueue_job_try, enqueue_time_ms = deserialize_job_raw(
                v, deserializer=self.job_deserializer
            )
        except SerializationError as e:
            logger.exception("deserializing job %s failed", job_id)
            return await job_failed(e)

        if abort_job:
            t = (timestamp_ms() - enqueue_time_ms) / 1000
            logger.info("%6.2fs ⊘ %s:%s aborted before start", t, job_id, function_name)
            return await job_failed(asyncio.CancelledError())

        try:
            function: Function | CronJob = self.functions[function_name]
        except KeyError:
            logger.warning("job %s, function %r not found", job_id, function_name)
            return await job_failed(JobExecutionFailed(f"function {function_name!r} not found"))

        if hasattr(function, "next_run"):
            # cron_job
            ref = function_name
            keep_in_progress: float | None = keep_cronjob_progress
        else:
            ref = f"{job_id}:{function_name}"
            keep_in_progress = None

        if enqueue_job_try and enqueue_job_try > job_try:
            job_try = enqueue_job_try
            await self.pool.setex(retry_key_prefix + job_id, 88400, str(job_try))

        max_tries = self.max_tries if function.max_tries is None else function.max_tries
        if job_try > max_tries:
            t = (timestamp_ms() - enqueue_time_ms) / 1000
            logger.warning("%6.2fs ! %s max retries %d exceeded", t, ref, max_tries)
            self.jobs_failed += 1
            result_data = serialize_result(
                function_name,
                args,
                kwargs,
                job_try,
                enqueue_time_ms,
                False,
                JobExecutionFailed(f"max {max_tries} retries exceeded"),
                start_ms,
                timestamp_ms(),
                ref,
                self.queue_name,
                job_id=job_id,
                serializer=self.job_serializer,
            )
            return await asyncio.shield(self.finish_failed_job(job_id, result_data))

        result = no_result
        exc_extra = None
        finish = False
        timeout_s = self.job_timeout_s if function.timeout_s is None else function.timeout_s
        incr_score: int | None = None
        job_ctx = {
            "job_id": job_id,
            "job_try": job_try,
            "enqueue_time": ms_to_datetime(enqueue_time_ms),
            "score": score,
        }
        ctx = {**self.ctx, **job_ctx}

        if self.on_job_start:
            await self.on_job_start(ctx)

        start_ms = timestamp_ms()
        success = False
        try:
            s = args_to_string(args, kwargs)
            extra = f" try={job_try}" if job_try > 1 else ""
            if (start_ms - score) > 1200:
                extra += f" delayed={(start_ms - score) / 1000:0.2f}s"
            logger.info("%6.2fs → %s(%s)%s", (start_ms - enqueue_time_ms) / 1000, ref, s, extra)
            self.job_tasks[job_id] = task = self.loop.create_task(function.coroutine(ctx, *args, **kwargs))

            # run repr(result) and extra inside try/except as they can raise exceptions
            try:
                result = await asyncio.wait_for(task, timeout_s)
            except (Exception, asyncio.CancelledError) as e:
                exc_extra = getattr(e, "extra", None)
                if callable(exc_extra):
                    exc_extra = exc_extra()
                raise
            else:
                result_str = "" if result is None or not self.log_results else truncate(repr(result))
            finally:
                del self.job_tasks[job_id]

        except (Exception, asyncio.CancelledError) as e:
            finished_ms = timestamp_ms()
            t = (finished_ms - start_ms) / 1000
            if self.retry_jobs and isinstance(e, Retry):
                incr_score = e.defer_score
                logger.info("%6.2fs ↻ %s retrying job in %0.2fs", t, ref, (e.defer_score or 0) / 1000)
                if e.defer_score:
                    incr_score = e.defer_score + (timestamp_ms() - score)
                self.jobs_retried += 1
            elif job_id in self.aborting_tasks and isinstance(e, asyncio.CancelledError):
                logger.info("%6.2fs ⊘ %s aborted", t, ref)
                result = e
                finish = True
                self.aborting_tasks.remove(job_id)
                self.jobs_failed += 1
            elif self.retry_jobs and isinstance(e, (asyncio.CancelledError, RetryJob)):
                logger.info("%6.2fs ↻ %s cancelled, will be run again", t, ref)
                self.jobs_retried += 1
            else:
                logger.exception(
                    "%6.2fs ! %s failed, %s: %s", t, ref, e.__class__.__name__, e, extra={"extra": exc_extra}
                )
                result = e
                finish = True
                self.jobs_failed += 1
        else:
            success = True
            finished_ms = timestamp_ms()
            logger.info("%6.2fs ← %s ● %s", (finished_ms - start_ms) / 1000, ref, result_str)
            finish = True
            self.jobs_complete += 1

        keep_result_forever = (
            self.keep_result_forever if function.keep_result_forever is None else function.keep_result_forever
        )
        result_timeout_s = self.keep_result_s if function.keep_result_s is None else function.keep_result_s
        result_data = None
        if result is not no_result and (keep_result_forever or result_timeout_s > 0):
            result_data = serialize_result(
                function_name,
                args,
                kwargs,
                job_try,
                enqueue_time_ms,
                success,
                result,
                start_ms,
                finished_ms,
                ref,
                self.queue_name,
                job_id=job_id,
                serializer=self.job_serializer,
            )

        if self.on_job_end:
            await self.on_job_end(ctx)

        await asyncio.shield(
            self.finish_job(
                job_id,
                finish,
                result_data,
                result_timeout_s,
                keep_result_forever,
                incr_score,
                keep_in_progress,
            )
        )

        if self.after_job_end:
            await self.after_job_end(ctx)

    async def finish_job(
        self,
        job_id: str,
        finish: bool,
        result_data: bytes | None,
        result_timeout_s: float | None,
        keep_result_forever: bool,
        incr_score: int | None,
        keep_in_progress: float | None,
    ) -> None:
        if finish and keep_in_progress is None and not keep_result_forever and result_timeout_s is not None:
            if self._finishing is None:
                self._finish = self.pool.register_script(_FINISH)
                self._finishing = Batcher(self._finish_all)
            await self._finishing.submit((job_id, result_data or b"", to_ms(result_timeout_s)))
            return
        # a retry or a reschedule, or a result kept for good: arq's own MULTI
        await super().finish_job(
            job_id, finish, result_data, result_timeout_s, keep_result_forever, incr_score, keep_in_progress
        )

    async def _finish_all(self, batch: list[_Finished]) -> list[None]:
        assert self._finish is not None  # registered with the batcher
        keys = [self.queue_name, abort_jobs_ss]
        args: list[str | bytes | int] = []
        for job_id, result, lifetime_ms in batch:
            keys += [prefix + job_id for prefix in _FINISHED_KEYS]
            args += [job_id, result, lifetime_ms]
        await self._finish(keys=keys, args=args)
        return [None] * len(batch)
