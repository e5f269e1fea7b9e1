"""`cvco-ipn replay`: queue parked jobs again.

Replay needs no running worker: it queues each parked notification again as a fresh arq job
`replay:<id>:<n>` (same JSON payload); a worker that processes it successfully removes the entry.
Replaying twice is harmless: the same entry gives the same job id until it is parked again, and the
workers' exactly-once apply publishes nothing twice.

With `--wait` it then watches each job's arq result (kept a minute after it ends) and prints its outcome:
published, duplicate, stale, or parked again with the error from the failed list; exit 1 if any was parked
again or had not ended within `--timeout`. On a terminal, a bulk replay shows its progress.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

from arq.connections import ArqRedis
from arq.jobs import Job
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cli.failed import add_filters, find_parked, select
from cli.runner import UsageError, run_with_redis
from cli.text import console, is_terminal, literal
from schemas import job as job_schema
from schemas.settings import Settings
from workers import failed_store
from workers.failed_store import FailedJob

POLL_S = 0.2
PARKED_AGAIN = "parked again"
NOT_FINISHED = "not finished"


def register(commands: argparse._SubParsersAction[Any]) -> None:
    replay = commands.add_parser(
        "replay", help="re-queue parked jobs; a replay that succeeds leaves the list"
    )
    replay.add_argument(
        "ids",
        nargs="*",
        metavar="ID",
        help="parked job ids as `cvco-ipn failed list` shows them, or prefixes",
    )
    replay.add_argument("--all", action="store_true", help="every parked job (after the filters)")
    replay.add_argument("--dry-run", action="store_true", help="say what would be queued, queue nothing")
    replay.add_argument(
        "--wait",
        action="store_true",
        help="then wait for each job and print its outcome (published, duplicate, stale, parked again); "
        "exit 1 if any is parked again or not finished in time",
    )
    replay.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="with --wait: seconds to wait in all (default 60)",
    )
    add_filters(replay)
    replay.set_defaults(handler=run)


def _what(entry: FailedJob) -> str:
    return literal(
        f"{entry.id} (shop {entry.shop_id or '-'}, order {entry.order_id or '-'}, {entry.error_class})"
    )


async def _outcome(
    redis: ArqRedis, settings: Settings, entry: FailedJob, job_id: str
) -> tuple[str, str] | None:
    """What the replay job did (published, duplicate, stale, parked again) and its error; None while it
    has not ended."""
    job = Job(job_id, redis, _queue_name=settings.queue_name, _deserializer=job_schema.loads)
    info = await job.result_info()
    if info is None:
        return None
    if info.success and isinstance(info.result, dict):
        return str(info.result.get("result", "done")), ""
    again = await failed_store.get(redis, entry.id)  # the wrapper parked it and returned nothing
    error = f"{again.error_class}: {again.error_message}" if again else str(info.result)
    return PARKED_AGAIN, error


async def _wait(
    redis: ArqRedis,
    settings: Settings,
    jobs: dict[str, FailedJob],
    timeout_s: float,
    advance: Callable[[], None],
    say: Callable[[str], None],
) -> Counter[str]:
    """Poll the jobs' results until all ended or `timeout_s` passed; print each outcome as it comes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    waiting = dict(jobs)
    tally: Counter[str] = Counter()
    while waiting:
        outcomes = await asyncio.gather(
            *(_outcome(redis, settings, entry, job_id) for job_id, entry in waiting.items())
        )
        for (job_id, entry), outcome in zip(list(waiting.items()), outcomes, strict=True):
            if outcome is None:
                continue
            del waiting[job_id]
            kind, error = outcome
            tally[kind] += 1
            say(f"{kind} {_what(entry)}" + (f": {literal(error)}" if error else ""))
            advance()
        if waiting and loop.time() >= deadline:
            for entry in waiting.values():
                say(f"{NOT_FINISHED} after {timeout_s:g} s {_what(entry)}")
            tally[NOT_FINISHED] += len(waiting)
            break
        if waiting:
            await asyncio.sleep(POLL_S)
    return tally


async def _replay(redis: ArqRedis, settings: Settings, args: argparse.Namespace) -> int:
    if bool(args.ids) == bool(args.all):
        raise UsageError("name the jobs to replay (ID...) or --all, not both")
    if args.wait and args.dry_run:
        raise UsageError("--wait has nothing to wait for with --dry-run")
    if args.timeout <= 0:
        raise UsageError(f"--timeout must be above 0 seconds, got {args.timeout:g}")
    if args.all:
        entries = await select(redis, args)
    else:
        wanted = {entry.id for entry in await select(redis, args)}
        entries = [entry for entry in await find_parked(redis, args.ids) if entry.id in wanted]
    out = console()
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=out
    )
    show_progress = is_terminal() and len(entries) > 1 and not args.dry_run
    task = progress.add_task("queueing", total=len(entries))

    def say(line: str) -> None:
        out.print(line, soft_wrap=True) if show_progress else print(line)

    if show_progress:
        progress.start()
    try:
        jobs: dict[str, FailedJob] = {}
        for entry in entries:
            job_id = entry.replay_job_id
            if args.dry_run:
                say(f"would queue {_what(entry)} as job {literal(job_id)}")
                continue
            queued = await failed_store.requeue(redis, entry, settings.queue_name)
            say(f"{'queued' if queued else 'already queued'} {_what(entry)} as job {literal(job_id)}")
            jobs[job_id] = entry
            progress.advance(task)
        verb = "would queue" if args.dry_run else "queued"
        say(f"{verb} {len(entries) if args.dry_run else len(jobs)} of {len(entries)} parked job(s)")
        if not args.wait or not jobs:
            return 0
        progress.reset(task, description="waiting for the workers", total=len(jobs))
        tally = await _wait(redis, settings, jobs, args.timeout, lambda: progress.advance(task), say)
    finally:
        if show_progress:
            progress.stop()
    order = ("published", "duplicate", "stale", PARKED_AGAIN, NOT_FINISHED)
    counts = ", ".join(f"{tally[name]} {name}" for name in order if tally[name])
    extra = ", ".join(f"{n} {name}" for name, n in tally.items() if name not in order)
    print(f"replayed {len(jobs)}: {counts}{', ' + extra if extra else ''}")
    return 1 if tally[PARKED_AGAIN] or tally[NOT_FINISHED] else 0


def run(args: argparse.Namespace) -> int:
    return run_with_redis(_replay, args)
