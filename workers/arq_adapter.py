"""The one place that relies on arq's internals: a job claim in one round trip instead of four, and the
writes of the jobs that finish together in one round trip instead of one each.

Pinned: arq 0.28 (`arq>=0.28,<0.29` in pyproject.toml). `tests/test_arq_adapter.py` fails loudly when an
upgrade changes what this relies on: `Worker.start_jobs(job_ids)` as the step between a poll and
`run_job(job_id, score)`, the `sem`, `job_counter`, `max_jobs`, `tasks` and
`_release_sem_dec_counter_on_complete` it keeps, and `Worker.finish_job`'s arguments and writes.

Why: arq 0.28 claims each polled job with WATCH, EXISTS, ZSCORE, then MULTI/PSETEX/EXEC, one job after the
other in the polling loop. `_CLAIM` makes the same checks and the same write, atomically per job (not in
progress, still queued, not deferred; then the in-progress key with arq's own timeout), for as many jobs
as `max_jobs` leaves room for; a claim still excludes any other worker, stock arq ones included.
arq then ends each finished job with a MULTI of its own; `_FINISH` makes the same writes for all the jobs
that finished meanwhile (`workers.batches.Batcher`), atomically. A job retried or rescheduled, or a result
kept forever, still goes through arq's own `finish_job`.

Measured gain (tests/perf/bench_worker.py, same runs): the claim, 2026-12-02: a no-op job drains at 1.5-2.3x
the rate of arq's stock `Worker`; the notification job reaches 98-118 % of that stock no-op with it,
59-80 % without. The finish, 2026-12-07: the notification job from 70-79 % of that stock no-op to 67-88 %
(medians of the runs 73 % and 82 %; the README's benchmark section has the runs).
"""

from __future__ import annotations

import structlog
from arq.constants import (
    abort_jobs_ss,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)
from arq.utils import timestamp_ms, to_ms
from arq.worker import Worker
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError, ResponseError

from workers.batches import Batcher

log = structlog.get_logger("cvco.worker")

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
    """arq's `Worker`, claiming the jobs of a poll in one Lua call and finishing the jobs that end together
    in another; in between, arq's `run_job`."""

    _claim: AsyncScript | None = None
    _finish: AsyncScript | None = None
    _finishing: Batcher[_Finished, None] | None = None

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
        if not finish or keep_in_progress is not None or keep_result_forever or result_timeout_s is None:
            # a retry or a reschedule, or a result kept for good: arq's own MULTI
            await super().finish_job(
                job_id,
                finish,
                result_data,
                result_timeout_s,
                keep_result_forever,
                incr_score,
                keep_in_progress,
            )
            return
        if self._finishing is None:
            self._finish = self.pool.register_script(_FINISH)
            self._finishing = Batcher(self._finish_all)
        await self._finishing.submit((job_id, result_data or b"", to_ms(result_timeout_s)))

    async def _finish_all(self, batch: list[_Finished]) -> list[None]:
        assert self._finish is not None  # registered with the batcher
        keys = [self.queue_name, abort_jobs_ss]
        args: list[str | bytes | int] = []
        for job_id, result, lifetime_ms in batch:
            keys += [prefix + job_id for prefix in _FINISHED_KEYS]
            args += [job_id, result, lifetime_ms]
        await self._finish(keys=keys, args=args)
        return [None] * len(batch)
