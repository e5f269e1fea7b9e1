"""`cvco-ipn replay`: queue parked jobs again.

Replay needs no running worker: it queues each parked notification again as a fresh arq job
`replay:<id>:<n>` (same JSON payload); a worker that processes it successfully removes the entry.
Replaying twice is harmless: the same entry gives the same job id until it is parked again, and the
workers' exactly-once apply publishes nothing twice.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from arq.connections import ArqRedis

from cli.failed import add_filters, find_parked, select
from cli.runner import UsageError, run_with_redis
from cli.text import literal
from schemas.job import PROCESS_NOTIFICATION
from schemas.settings import Settings


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
    add_filters(replay)
    replay.set_defaults(handler=run)


async def _replay(redis: ArqRedis, settings: Settings, args: argparse.Namespace) -> int:
    if bool(args.ids) == bool(args.all):
        raise UsageError("name the jobs to replay (ID...) or --all, not both")
    if args.all:
        entries = await select(redis, args)
    else:
        wanted = {entry.id for entry in await select(redis, args)}
        entries = [entry for entry in await find_parked(redis, args.ids) if entry.id in wanted]
    queued = 0
    for entry in entries:
        job_id = entry.replay_job_id
        what = literal(
            f"{entry.id} as job {job_id} (shop {entry.shop_id or '-'}, order {entry.order_id or '-'}, "
            f"{entry.error_class})"
        )
        if args.dry_run:
            print(f"would queue {what}")
            continue
        job = await redis.enqueue_job(
            PROCESS_NOTIFICATION, json.loads(entry.payload), _job_id=job_id, _queue_name=settings.queue_name
        )
        print(f"queued {what}" if job is not None else f"already queued {what}")
        queued += job is not None
    verb = "would queue" if args.dry_run else "queued"
    print(f"{verb} {len(entries) if args.dry_run else queued} of {len(entries)} parked job(s)")
    return 0


def run(args: argparse.Namespace) -> int:
    return run_with_redis(_replay, args)
