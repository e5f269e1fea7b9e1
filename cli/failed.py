"""`cvco-ipn failed list|show` and `cvco-ipn replay`: the operator's view of parked jobs.

Replay needs no running worker: it queues each parked notification again as a fresh arq job
`replay:<id>:<n>` (same JSON payload); a worker that processes it successfully removes the entry.
Replaying twice is harmless: the same entry gives the same job id until it is parked again, and the
workers' exactly-once apply publishes nothing twice.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from arq.connections import ArqRedis
from rich.table import Table

from cli.runner import UsageError, parse_since, run_with_redis
from cli.text import cell, console, is_terminal, json_text, literal
from schemas.job import PROCESS_NOTIFICATION
from schemas.settings import Settings
from workers import failed_store
from workers.failed_store import FailedJob


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since", help="only jobs that last failed since: a duration (2h, 30m, 1d) or an ISO date"
    )
    parser.add_argument("--shop", help="only this shop (vads_site_id)")
    parser.add_argument("--error", help="only errors whose class contains this text (case-insensitive)")


def register(commands: argparse._SubParsersAction[Any]) -> None:
    failed = commands.add_parser("failed", help="inspect parked (failed) notification jobs")
    actions = failed.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="parked jobs, one a line: id, when, shop, order, error")
    listing.add_argument("--json", action="store_true", help="a JSON array instead of text")
    _add_filters(listing)
    listing.set_defaults(handler=run_list)
    show = actions.add_parser("show", help="the raw notification and the whole error")
    show.add_argument("id")
    show.add_argument("--json", action="store_true", help="the entry as one JSON object")
    show.set_defaults(handler=run_show)
    replay = commands.add_parser(
        "replay", help="re-queue parked jobs; a replay that succeeds leaves the list"
    )
    replay.add_argument(
        "ids", nargs="*", metavar="ID", help="parked job ids, as `cvco-ipn failed list` shows them"
    )
    replay.add_argument("--all", action="store_true", help="every parked job (after the filters)")
    replay.add_argument("--dry-run", action="store_true", help="say what would be queued, queue nothing")
    _add_filters(replay)
    replay.set_defaults(handler=run_replay)


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _as_json(entry: FailedJob, *, full: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": entry.id,
        "failed_at": _when(entry.last_failed_at),
        "first_failed_at": _when(entry.first_failed_at),
        "shop_id": entry.shop_id or None,
        "order_id": entry.order_id or None,
        "trans_id": entry.trans_id or None,
        "trans_uuid": entry.trans_uuid or None,
        "error_class": entry.error_class,
        "error_message": entry.error_message,
        "tries": entry.tries,
    }
    if full:
        data["traceback"] = entry.traceback
        data["job_id"] = entry.job_id
        data["notification"] = json.loads(entry.payload) if entry.payload else None
    return data


async def _select(redis: ArqRedis, args: argparse.Namespace) -> list[FailedJob]:
    since = parse_since(args.since) if args.since else None
    error = (args.error or "").lower()
    return [
        entry
        async for entry in failed_store.iter_failed(redis, since=since)
        if (not args.shop or entry.shop_id == args.shop) and error in entry.error_class.lower()
    ]


def _print_list(entries: list[FailedJob], as_json: bool) -> None:
    if as_json:
        print(json_text([_as_json(entry) for entry in entries], indent=2))
        return
    rows = [
        (
            entry.id,
            _when(entry.last_failed_at),
            entry.shop_id or "-",
            entry.order_id or "-",
            entry.error_class,
        )
        for entry in entries
    ]
    if is_terminal():
        table = Table("id", "when", "shop", "order", "error", title=f"{len(rows)} parked job(s)")
        for row in rows:
            table.add_row(*map(cell, row))
        console().print(table)
        return
    for row in rows:
        # a tab inside a value is escaped too, so a line always has exactly five columns
        print("\t".join(map(literal, row)))


async def _list(redis: ArqRedis, settings: Settings, args: argparse.Namespace) -> int:
    _print_list(await _select(redis, args), args.json)
    return 0


async def _show(redis: ArqRedis, settings: Settings, args: argparse.Namespace) -> int:
    entry = await failed_store.get(redis, args.id)
    if entry is None:
        raise UsageError(f"no parked job with id {args.id!r} (see cvco-ipn failed list)")
    data = _as_json(entry, full=True)
    if args.json:
        print(json_text(data, indent=2))
        return 0
    for name in (
        "id",
        "failed_at",
        "first_failed_at",
        "tries",
        "shop_id",
        "order_id",
        "trans_id",
        "trans_uuid",
    ):
        print(f"{name}: {literal(data[name]) if data[name] is not None else '-'}")
    print(f"error: {literal(entry.error_class)}: {literal(entry.error_message)}")
    print(f"replay with: cvco-ipn replay {literal(entry.id)}")
    print("\nnotification:")
    print(json_text(data["notification"], indent=2))
    print("\ntraceback:")
    # the traceback's lines stay lines, indented: a newline a value put in the message cannot pose as a field
    for line in entry.traceback.rstrip().split("\n"):
        print("  " + literal(line))
    return 0


async def _replay(redis: ArqRedis, settings: Settings, args: argparse.Namespace) -> int:
    if bool(args.ids) == bool(args.all):
        raise UsageError("name the jobs to replay (ID...) or --all, not both")
    if args.all:
        entries = await _select(redis, args)
    else:
        found = {failed_id: await failed_store.get(redis, failed_id) for failed_id in dict.fromkeys(args.ids)}
        unknown = [failed_id for failed_id, entry in found.items() if entry is None]
        if unknown:
            raise UsageError(
                f"not in the failed list (already replayed, or a wrong id): {', '.join(unknown)}"
            )
        wanted = {entry.id for entry in await _select(redis, args)}
        entries = [entry for entry in found.values() if entry is not None and entry.id in wanted]
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


def _run(action: Any, args: argparse.Namespace) -> int:
    return run_with_redis(action, args)


def run_list(args: argparse.Namespace) -> int:
    return _run(_list, args)


def run_show(args: argparse.Namespace) -> int:
    return _run(_show, args)


def run_replay(args: argparse.Namespace) -> int:
    return _run(_replay, args)
