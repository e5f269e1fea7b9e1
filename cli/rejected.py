"""`cvco-ipn rejected list|show|retry`: the refused `POST /ipn` requests the receiver kept.

`retry` runs each kept request through the receiver's checks again, with the configuration of now (a
shop added to CVCO_SHOPS, a corrected key), and queues those that pass exactly as the receiver would
have: same job, same id, received now. Those still refused stay in the store. Every text shown comes
from whoever posted the request, so each is shown `literal`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from cli.runner import UsageError, cannot_reach, parse_since
from core.redis_connection import redis_client
from ingest.body import BodyError
from ingest.enqueue import EnqueueUnavailable
from ingest.rejected_retry import job_writer, recheck, requeue
from ingest.rejected_store import RejectedRequest, get_rejected, list_rejected
from ingest.rejections import KEPT_REASONS, Rejected
from schemas.literal import literal
from schemas.settings import Settings, load_settings


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since", help="only requests received since: a duration (2h, 30m, 1d) or an ISO date"
    )
    parser.add_argument("--reason", choices=KEPT_REASONS, help="only requests refused for this reason")


def register(commands: argparse._SubParsersAction[Any]) -> None:
    rejected = commands.add_parser("rejected", help="inspect and retry refused POST /ipn requests (401, 403)")
    actions = rejected.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list", help="kept refusals, one a line: id, when, client address, shop, order, reason"
    )
    listing.add_argument("--json", action="store_true", help="a JSON array instead of text")
    _add_filters(listing)
    listing.set_defaults(handler=lambda args: _run(_list, args))
    show = actions.add_parser("show", help="the raw body of a kept refusal and why it was refused")
    show.add_argument("id")
    show.add_argument("--json", action="store_true", help="the entry as one JSON object")
    show.set_defaults(handler=lambda args: _run(_show, args))
    retry = actions.add_parser(
        "retry",
        help="run kept refusals through the receiver's checks again and queue those that now pass",
        description="Run kept refusals through the receiver's checks with the current configuration and "
        "queue those that now pass, as if the platform had just sent them; the others stay. Exit 1 when "
        "one is still refused.",
    )
    retry.add_argument("ids", nargs="*", metavar="ID", help="ids as `cvco-ipn rejected list` shows them")
    retry.add_argument("--all", action="store_true", help="every kept refusal (after the filters)")
    retry.add_argument("--dry-run", action="store_true", help="say what would be queued, queue nothing")
    _add_filters(retry)
    retry.set_defaults(handler=lambda args: _run(_retry, args))


def _as_json(entry: RejectedRequest, *, full: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": entry.id,
        "received_at": entry.received_at.isoformat(timespec="seconds"),
        "client_ip": entry.client_ip,
        "shop_id": entry.shop_id or None,
        "order_id": entry.order_id or None,
        "reason": entry.reason,
        "status": entry.status,
        "message": entry.message,
    }
    if full:
        data["body"] = entry.body.decode("utf-8", "backslashreplace")
    return data


async def _select(redis: Redis, args: argparse.Namespace) -> list[RejectedRequest]:
    since = parse_since(args.since) if args.since else None
    return await list_rejected(redis, since=since, reasons=[args.reason] if args.reason else KEPT_REASONS)


LIST_COLUMNS = ("id", "received_at", "client_ip", "shop_id", "order_id", "reason")
SHOW_FIELDS = (*LIST_COLUMNS, "status", "message")


def list_line(entry: RejectedRequest) -> str:
    """One line of `rejected list`: tab-separated, every value literal (a tab or line break in it too)."""
    row = _as_json(entry)
    return "\t".join(literal(str(row[name] or "-")) for name in LIST_COLUMNS)


def show_lines(entry: RejectedRequest) -> list[str]:
    """The lines of `rejected show`: the entry, the retry command, then the body, all literal."""
    data = _as_json(entry, full=True)
    lines = [f"{name}: {literal(str(data[name] if data[name] is not None else '-'))}" for name in SHOW_FIELDS]
    # a byte that is not UTF-8 shows as \udcXX, which a backslash in the body (shown \\) never looks like
    body = literal(entry.body.decode("utf-8", "surrogateescape"))
    return [*lines, f"retry with: cvco-ipn rejected retry {literal(entry.id)}", "", "body:", body]


async def _list(redis: Redis, settings: Settings, args: argparse.Namespace) -> int:
    entries = await _select(redis, args)
    if args.json:
        print(json.dumps([_as_json(entry) for entry in entries], indent=2))
        return 0
    for entry in entries:
        print(list_line(entry))
    return 0


async def _show(redis: Redis, settings: Settings, args: argparse.Namespace) -> int:
    entry = await get_rejected(redis, args.id)
    if entry is None:
        raise UsageError(f"no kept refusal with id '{literal(args.id)}' (see cvco-ipn rejected list)")
    if args.json:
        print(json.dumps(_as_json(entry, full=True), indent=2))
        return 0
    print("\n".join(show_lines(entry)))
    return 0


async def _retry(redis: Redis, settings: Settings, args: argparse.Namespace) -> int:
    if bool(args.ids) == bool(args.all):
        raise UsageError("name the refusals to retry (ID...) or --all, not both")
    entries = await _select(redis, args)
    if args.ids:
        by_id = {entry.id: entry for entry in entries}
        unknown = [rejected_id for rejected_id in args.ids if rejected_id not in by_id]
        if unknown:
            raise UsageError(f"not kept (expired, retried, or a wrong id): {literal(', '.join(unknown))}")
        entries = [by_id[rejected_id] for rejected_id in dict.fromkeys(args.ids)]
    refused = queued = 0
    async with job_writer(redis, settings) as writer:
        for entry in entries:
            what = (
                f"{entry.id} (shop {literal(entry.shop_id or '-')}, order {literal(entry.order_id or '-')})"
            )
            try:
                job = recheck(entry, settings)
            except (Rejected, BodyError) as e:
                print(f"still refused {what}: {e}")
                refused += 1
                continue
            if args.dry_run:
                print(f"would queue {what}")
                continue
            written = await requeue(redis, writer, entry, job)
            print(f"queued {what} as job {job.job_id}" if written else f"already queued {what}")
            queued += 1
    verb = "would queue" if args.dry_run else "queued"
    print(
        f"{verb} {len(entries) - refused if args.dry_run else queued} of {len(entries)}; {refused} still refused"
    )
    return 1 if refused else 0


Action = Callable[[Redis, Settings, argparse.Namespace], Coroutine[Any, Any, int]]


def _run(action: Action, args: argparse.Namespace) -> int:
    settings = load_settings()

    async def main() -> int:
        redis = redis_client(settings, socket_timeout_s=settings.redis_timeout_s * 5)
        try:
            return await action(redis, settings, args)
        finally:
            await redis.aclose()

    try:
        return asyncio.run(main())
    except UsageError as e:
        sys.stderr.write(f"cvco-ipn: {e}\n")
        return 2
    except (RedisError, OSError, EnqueueUnavailable) as e:
        sys.stderr.write(cannot_reach(settings, e) + "\n")
        return 1
