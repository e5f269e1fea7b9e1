"""The keys of arq's `ctx` that the workers' jobs and hooks read, named once."""

from __future__ import annotations

from typing import Any, TypedDict, cast

from arq.typing import WorkerCoroutine
from redis.asyncio import Redis

from schemas.settings import Settings
from workers.apply import StateWriter
from workers.metrics import WorkerMetrics


class WorkerContext(TypedDict, total=False):
    """arq's own keys (`redis`, `job_id`, `job_try`, ...), the worker's settings and metrics (`ctx=` of the
    worker), and the state writer its jobs share (set at start-up)."""

    redis: Redis  # arq's ArqRedis; the jobs use only its Redis commands
    settings: Settings
    metrics: WorkerMetrics
    state_writer: StateWriter
    job_id: str
    job_try: int
    enqueue_time: Any
    score: int


def arq_function(coroutine: Any) -> WorkerCoroutine:
    """A job or cron of ours as arq types it: arq's protocol names `ctx` a plain dict, ours `WorkerContext`."""
    return cast(WorkerCoroutine, coroutine)
