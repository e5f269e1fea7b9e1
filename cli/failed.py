"""`cvco-ipn failed list|show|discard`: the operator's view of parked jobs, and closing those that
can never succeed.

An id may be given by any prefix that names one parked job (`ipn:0848f3` for `ipn:0848f3c3…`).
`discard` moves entries to the audit records of workers/discarded_store.py (`failed list --discarded`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from arq.connections import ArqRedis
from redis.asyncio import Redis
from rich.table import Table

from cli.runner import UsageError, parse_since, run_with_redis
from cli.text import cell, console, is_terminal, json_text, literal
from core import keys
from schemas.settings import Settings
from workers import discarded_store, failed_store
from workers.discarded_store import DiscardedJob
from workers.failed_store import FailedJob

_GLOB_SPECIAL = str.maketrans({char: "\\" + char for char in "*?[]\\"})


def add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since", help="only jobs that last failed since: a duration (2h, 30m, 1d) or an ISO date"
    )
    parser.add_argument("--shop", help="only this shop (vads_site_id)")
    parser.add_argument("--error", help="only errors whose class contains this text (case-insensitive)")


def register(commands: argparse._SubParsersAction[Any]) -> None:
    failed = commands.add_parser("failed", help="inspect parked (failed) notification jobs, discard them")
    actions = failed.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="parked jobs, one a line: id, when, shop, order, error")
    listing.add_argument("--json", action="store_true", help="a JSON array instead of text")
    listing.add_argument(
        "--discarded",
        action="store_true",
        help="the discarded jobs' audit records instead: id, when discarded, shop, order, error, reason",
    )
    add_filters(listing)
    listing.set_defaults(handler=run_list)
    show = actions.add_parser("show", help="the raw notification and the whole error")
    show.add_argument("id", help="a parked (or discarded) job's id, or a prefix naming one")
    show.add_argument("--json", action="store_true", help="the entry as one JSON object")
    show.set_defaults(handler=run_show)
    discard = actions.add_parser(
        "discard",
        help="close parked jobs that will never be processed, keeping an audit record",
        description="Remove parked jobs an operator decided will never be processed (an unparsable "
        "notification, a test shop gone). Each leaves an audit record (when, reason, the raw notification) "
        "listed by `cvco-ipn failed list --discarded`; the same notification failing again is not mailed.",
    )
    discard.add_argument("ids", nargs="+", metavar="ID", help="parked job ids, or prefixes naming one each")
    discard.add_argument("--reason", required=True, help="why, for the audit record (required)")
    discard.set_defaults(handler=run_discard)


def when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def as_json(entry: FailedJob, *, full: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": entry.id,
        "failed_at": when(entry.last_failed_at),
        "first_failed_at": when(entry.first_failed_at),
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


def _discarded_json(record: DiscardedJob, *, full: bool = True) -> dict[str, Any]:
    return {
        **as_json(record.job, full=full),
        "discarded_at": when(record.discarded_at),
        "reason": record.reason,
    }


def _wanted(entry: FailedJob, args: argparse.Namespace) -> bool:
    return failed_store.FailedFilter(shop=args.shop, error=args.error).matches(entry)


async def select(redis: Redis, args: argparse.Namespace) -> list[FailedJob]:
    """The parked jobs the filters (--since, --shop, --error) keep, oldest failure first."""
    since = parse_since(args.since) if args.since else None
    return [entry async for entry in failed_store.iter_failed(redis, since=since) if _wanted(entry, args)]


async def _ids_with_prefix(redis: Redis, index: str, prefix: str) -> list[str]:
    pattern = prefix.translate(_GLOB_SPECIAL) + "*"
    return sorted([member.decode() async for member, _ in redis.zscan_iter(index, match=pattern)])


async def resolve_id(redis: Redis, given: str, index: str = keys.FAILED_INDEX) -> str | None:
    """The one id of `index` that is `given` or starts with it; None when none does; a usage error when
    several do."""
    if await redis.zscore(index, given) is not None:
        return given
    matches = await _ids_with_prefix(redis, index, given)
    if len(matches) > 1:
        shown = ", ".join(matches[:3]) + (", ..." if len(matches) > 3 else "")
        raise UsageError(f"{given!r} names {len(matches)} jobs ({literal(shown)}): give more of the id")
    return matches[0] if matches else None


async def find_parked(redis: Redis, ids: list[str]) -> list[FailedJob]:
    """The parked entries the ids (or prefixes) name, in order; any id naming none is a usage error."""
    entries: dict[str, FailedJob] = {}
    unknown: list[str] = []
    for given in dict.fromkeys(ids):
        failed_id = await resolve_id(redis, given)
        entry = await failed_store.get(redis, failed_id) if failed_id else None
        if entry is None:
            unknown.append(given)
        else:
            entries[entry.id] = entry
    if unknown:
        raise UsageError(
            f"not in the failed list (already replayed or discarded, or a wrong id): {literal(', '.join(unknown))}"
        )
    return list(entries.values())


def _print_rows(rows: Sequence[tuple[str, ...]], header: tuple[str, ...], title: str) -> None:
    if is_terminal():
        table = Table(*header, title=title)
        for row in rows:
            table.add_row(*map(cell, row))
        console().print(table)
        return
    for row in rows:
        # a tab inside a value is escaped too, so a line always has exactly its columns
        print("\t".join(map(literal, row)))


def _print_list(entries: list[FailedJob], as_json_list: bool) -> None:
    if as_json_list:
        print(json_text([as_json(entry) for entry in entries], indent=2))
        return
    rows = [
        (e.id, when(e.last_failed_at), e.shop_id or "-", e.order_id or "-", e.error_class) for e in entries
    ]
    _print_rows(rows, ("id", "when", "shop", "order", "error"), f"{len(rows)} parked job(s)")


async def _list_discarded(redis: Redis, args: argparse.Namespace) -> None:
    since = parse_since(args.since) if args.since else None
    records = [
        record
        async for record in discarded_store.iter_discarded(redis, since=since)
        if _wanted(record.job, args)
    ]
    if args.json:
        print(json_text([_discarded_json(record) for record in records], indent=2))
        return
    rows = [
        (
            r.job.id,
            when(r.discarded_at),
            r.job.shop_id or "-",
            r.job.order_id or "-",
            r.job.error_class,
            r.reason,
        )
        for r in records
    ]
    header = ("id", "discarded", "shop", "order", "error", "reason")
    _print_rows(rows, header, f"{len(rows)} discarded job(s)")


async def _list(redis: ArqRedis, settings: Settings, args: argparse.Namespace) -> int:
    if args.discarded:
        await _list_discarded(redis, args)
    else:
        _print_list(await select(redis, args), args.json)
    return 0


async def _find_for_show(redis: Redis, given: str) -> tuple[FailedJob, DiscardedJob | None]:
    failed_id = await resolve_id(redis, given)
    entry = await failed_store.get(redis, failed_id) if failed_id else None
    if entry is not None:
        return entry, None
    discarded_id = await resolve_id(redis, given, keys.DISCARDED_INDEX)
    record = await discarded_store.get(redis, discarded_id) if discarded_id else None
    if record is None:
        raise UsageError(f"no parked or discarded job with id {given!r} (see cvco-ipn failed list)")
    return record.job, record


async def _show(redis: ArqRedis, settings: Settings, args: argparse.Namespace) -> int:
    entry, record = await _find_for_show(redis, args.id)
    data = _discarded_json(record) if record else as_json(entry, full=True)
    if args.json:
        print(json_text(data, indent=2))
        return 0
    names = ["id", "failed_at", "first_failed_at", "tries", "shop_id", "order_id", "trans_id", "trans_uuid"]
    for name in [*names, *(("discarded_at", "reason") if record else ())]:
        print(f"{name}: {literal(data[name]) if data[name] is not None else '-'}")
    print(f"error: {literal(entry.error_class)}: {literal(entry.error_message)}")
    if record is None:
        print(f"replay with: cvco-ipn replay {literal(entry.id)}")
    print("\nnotification:")
    print(json_text(data["notification"], indent=2))
    print("\ntraceback:")
    # the traceback's lines stay lines, indented: a newline a value put in the message cannot pose as a field
    for line in entry.traceback.rstrip().split("\n"):
        print("  " + literal(line))
    return 0


async def _discard(redis: ArqRedis, settings: Settings, args: argparse.Namespace) -> int:
    reason = args.reason.strip()
    if not reason:
        raise UsageError("--reason must say why (it is kept in the audit record)")
    entries = await find_parked(redis, args.ids)
    for entry in entries:
        moved = await discarded_store.discard(
            redis,
            entry.id,
            reason,
            max_age_s=settings.discarded_max_age_s,
            keep_max=settings.discarded_max,
        )
        what = f"{entry.id} (shop {entry.shop_id or '-'}, order {entry.order_id or '-'}, {entry.error_class})"
        print(literal(f"discarded {what}" if moved else f"already gone {what} (replayed meanwhile?)"))
    print(f"discarded {len(entries)} job(s); see cvco-ipn failed list --discarded")
    return 0


def run_list(args: argparse.Namespace) -> int:
    return run_with_redis(_list, args)


def run_show(args: argparse.Namespace) -> int:
    return run_with_redis(_show, args)


def run_discard(args: argparse.Namespace) -> int:
    return run_with_redis(_discard, args)
