"""The arq adapter: its one-round-trip job claim keeps arq's rules (one start per job, never a job running
elsewhere, never a deferred one), its batched finish leaves what arq's own leaves, and an arq upgrade that
moves what it relies on fails here first."""

from __future__ import annotations

import ast
import asyncio
import hashlib
import inspect
import textwrap
from collections import Counter
from typing import Any

import pytest
from arq.connections import ArqRedis
from arq.constants import abort_jobs_ss, in_progress_key_prefix, job_key_prefix, retry_key_prefix
from arq.utils import timestamp_ms
from arq.version import VERSION as ARQ_VERSION
from arq.worker import Retry, Worker, func
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from core.redis_connection import HiredisPackingConnection
from schemas.job import loads
from schemas.settings import Settings
from tests.conftest import free_port
from workers.arq_adapter import ClaimingWorker
from workers.worker import build_worker, worker_options

JOB = "count_start"
ARQ_RUN_JOB_SHA256 = "589a19059ff84ee777552dc9fa5ff76b17d6d0d7f99716d2720a2ed07ccb9607"
"""arq 0.28.0's `Worker.run_job`, which `ClaimingWorker.run_job` copies."""


def counting_worker(settings: Settings, starts: Counter[str]) -> ClaimingWorker:
    async def count_start(ctx: dict[str, Any], label: str) -> None:
        starts[label] += 1
        await asyncio.sleep(0)  # let the other worker poll while this job is in progress

    worker = build_worker(
        settings,
        functions=[func(count_start, name=JOB)],
        cron_jobs=[],
        burst=True,
        poll_delay=0,
        handle_signals=False,
    )
    assert isinstance(worker, ClaimingWorker)
    return worker


async def _enqueue_numbered(pool: ArqRedis, settings: Settings, count: int) -> None:
    """Jobs `job-0` ... `job-<count - 1>` on the settings' queue, each job's argument its own id."""
    for index in range(count):
        await pool.enqueue_job(JOB, f"job-{index}", _job_id=f"job-{index}", _queue_name=settings.queue_name)


async def test_two_claiming_workers_start_each_of_300_jobs_exactly_once(
    pool: ArqRedis, settings: Settings
) -> None:
    """Two workers polling one queue race for the same job ids; each job still starts once."""
    await _enqueue_numbered(pool, settings, 300)
    starts: Counter[str] = Counter()
    workers = [counting_worker(settings, starts) for _ in range(2)]
    try:
        await asyncio.gather(*(worker.main() for worker in workers))
    finally:
        for worker in workers:
            await worker.close()
    assert len(starts) == 300 and set(starts.values()) == {1}
    assert all(worker.jobs_complete > 0 for worker in workers)  # both took part in the race


async def test_a_job_in_progress_elsewhere_or_deferred_is_left_alone(
    pool: ArqRedis, redis: Redis, settings: Settings
) -> None:
    """A job another worker holds (its in-progress key set) and a deferred job are not started."""
    queue = settings.queue_name
    await pool.enqueue_job(JOB, "ready", _job_id="ready", _queue_name=queue)
    await pool.enqueue_job(JOB, "held", _job_id="held", _queue_name=queue)
    await pool.enqueue_job(JOB, "later", _job_id="later", _queue_name=queue, _defer_by=60)
    await redis.set(in_progress_key_prefix + "held", b"1", px=60_000)
    starts: Counter[str] = Counter()
    worker = counting_worker(settings, starts)
    try:
        # a burst worker waits for the queue to empty, which the two others never let it do
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(worker.main(), 1.5)
    finally:
        await worker.close()
    assert starts == Counter({"ready": 1})
    assert await redis.zscore(queue, "held") is not None and await redis.zscore(queue, "later") is not None
    assert await redis.pttl(in_progress_key_prefix + "held") > 50_000  # the other worker's claim stands


async def test_the_worker_pool_packs_commands_with_hiredis_and_still_runs_jobs(
    pool: ArqRedis, settings: Settings
) -> None:
    """The pool handed to arq (`redis_pool=`) makes C-packing connections, and its jobs run."""
    await _enqueue_numbered(pool, settings, 20)
    starts: Counter[str] = Counter()
    worker = counting_worker(settings, starts)
    try:
        assert worker.pool.connection_pool.connection_class is HiredisPackingConnection
        await worker.main()
    finally:
        await worker.close()
    assert len(starts) == 20


async def _ending(ctx: dict[str, Any], label: str) -> str:
    """A job that ends as its label says: `boom...` fails, `again...` is retried once, the rest succeed."""
    if label.startswith("boom"):
        raise ValueError(label)
    if label.startswith("again") and ctx["job_try"] == 1:
        raise Retry(defer=0)
    return f"{label} at try {ctx['job_try']}"


async def _ends_left(
    worker_class: type[Worker], pool: ArqRedis, redis: Redis, settings: Settings, tag: str, keep_result: int
) -> dict[str, Any]:
    """Run jobs of each ending (ids prefixed with `tag`) through a burst worker of `worker_class`; each key
    left in the database (tag removed) with its type, whether it expires, and for a result what it says.

    Besides the job's own endings: `gone-1` lost its data (arq: "job expired"), `tired-1` had used up its
    tries already, `late-1` had tried once before, and `stop-1` was to be aborted before it started.
    """
    labels = [f"ok-{index}" for index in range(20)] + ["boom-1", "again-1", "gone-1", "tired-1", "late-1"]
    labels.append("stop-1")
    for label in labels:
        await pool.enqueue_job("ending", label, _job_id=tag + label, _queue_name=settings.queue_name)
    await redis.delete(job_key_prefix + tag + "gone-1")
    await redis.set(retry_key_prefix + tag + "tired-1", 3)
    await redis.set(retry_key_prefix + tag + "late-1", 1)
    await redis.zadd(abort_jobs_ss, {tag + "stop-1": timestamp_ms()})
    options = worker_options(
        settings, cron_jobs=[], burst=True, poll_delay=0, handle_signals=False, keep_result=keep_result
    )
    function = func(_ending, name="ending", max_tries=3)
    worker = worker_class(**{**options, "functions": [function], "allow_abort_jobs": True})
    try:
        await worker.main()
    finally:
        await worker.close()
    left: dict[str, Any] = {}
    async for raw in redis.scan_iter(match=f"*{tag}*"):
        name = raw.decode()
        kind, ttl = (await redis.type(name)).decode(), await redis.pttl(name)
        found: tuple[Any, ...] = (kind, 0 < ttl <= 60_000)
        if name.startswith("arq:result:"):  # arq's result record: success, result, try
            result = loads(await redis.get(name))
            found += (result["s"], str(result["r"]).replace(tag, ""), result["t"])
        left[name.replace(tag, "")] = found
    assert await redis.zscore(abort_jobs_ss, tag + "stop-1") is None
    return left


async def test_a_claimed_start_and_a_batched_finish_leave_what_arqs_own_leave(
    pool: ArqRedis, redis: Redis, settings: Settings
) -> None:
    """Jobs succeeded, failed, retried, lost, out of tries, on a later try and aborted: the same keys,
    lifetimes and results (success, value, try) after a `ClaimingWorker` (starting jobs in its claim,
    finishing them together in one script call) as after arq's stock `Worker`."""
    stock = await _ends_left(Worker, pool, redis, settings, "stock-", keep_result=60)
    claiming = await _ends_left(ClaimingWorker, pool, redis, settings, "claiming-", keep_result=60)
    assert claiming == stock
    assert len(stock) == 26
    assert stock["arq:result:ok-7"] == ("string", True, True, "ok-7 at try 1", 1)
    assert stock["arq:result:again-1"][2:] == (True, "again-1 at try 2", 2)
    assert stock["arq:result:late-1"][2:] == (True, "late-1 at try 2", 2)
    assert stock["arq:result:boom-1"][2:4] == (False, "boom-1")
    assert stock["arq:result:gone-1"][2:4] == (False, "job expired")
    assert stock["arq:result:tired-1"][2:] == (False, "max 3 retries exceeded", 4)
    assert stock["arq:result:stop-1"][2] is False
    assert await redis.zcard(settings.queue_name) == 0


async def test_with_no_result_kept_they_leave_nothing_as_arqs_own(
    pool: ArqRedis, redis: Redis, settings: Settings
) -> None:
    stock = await _ends_left(Worker, pool, redis, settings, "stock-", keep_result=0)
    claiming = await _ends_left(ClaimingWorker, pool, redis, settings, "claiming-", keep_result=0)
    assert claiming == stock == {}
    assert await redis.zcard(settings.queue_name) == 0


async def test_arq_still_has_what_the_adapter_relies_on(settings: Settings) -> None:
    """arq 0.28's claim step, the counters around it and the job run it hands claimed jobs to, as
    `ClaimingWorker` uses and copies them: an upgrade that changes any of them must be read against
    workers/arq_adapter.py before it lands."""
    assert ARQ_VERSION.startswith("0.28."), f"arq {ARQ_VERSION}: re-check workers/arq_adapter.py"
    run_job = hashlib.sha256(inspect.getsource(Worker.run_job).encode()).hexdigest()
    assert run_job == ARQ_RUN_JOB_SHA256, "arq's run_job changed: copy it again into ClaimingWorker.run_job"
    assert list(inspect.signature(Worker.start_jobs).parameters) == ["self", "job_ids"]
    assert list(inspect.signature(Worker.run_job).parameters) == ["self", "job_id", "score"]
    assert list(inspect.signature(Worker.finish_job).parameters) == list(
        inspect.signature(ClaimingWorker.finish_job).parameters
    )
    worker = build_worker(settings, cron_jobs=[], burst=True, handle_signals=False)
    assert isinstance(worker.sem, asyncio.Semaphore)
    assert (worker.job_counter, worker.tasks) == (0, {})
    assert worker.max_jobs > 0
    assert callable(worker._release_sem_dec_counter_on_complete)


def _statements(function: Any) -> list[str]:
    """The statements of a function's body, without docstring or type annotations (which the linters
    rewrite), each as `ast.dump` gives it."""

    class Unannotated(ast.NodeTransformer):
        def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
            assert node.value is not None
            return ast.Assign(targets=[node.target], value=self.visit(node.value), lineno=node.lineno)

    definition = ast.parse(textwrap.dedent(inspect.getsource(function))).body[0]
    assert isinstance(definition, ast.AsyncFunctionDef)
    body = [Unannotated().visit(statement) for statement in definition.body]
    if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return [ast.dump(statement) for statement in body]


def test_the_adapters_run_job_is_arqs_but_for_its_opening_multi() -> None:
    """`ClaimingWorker.run_job` is arq's, statement for statement, except the pipeline (the claim made it)."""
    arqs, ours = _statements(Worker.run_job), _statements(ClaimingWorker.run_job)
    assert "pipeline" in arqs[1] and "_started" in ours[1]
    assert ours[:1] + ours[2:] == arqs[:1] + arqs[2:]


async def test_closing_a_worker_whose_redis_is_gone_does_not_raise(settings: Settings) -> None:
    """arq's close() deletes the health-check key; with Redis gone the worker still closes, so a worker
    stopped by a signal while Redis is away ends as stopped instead of looking like one that lost Redis."""
    gone = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    worker = build_worker(gone, cron_jobs=[], burst=True, handle_signals=False)
    with pytest.raises(RedisConnectionError):
        await worker.pool.ping()
    await worker.close()
