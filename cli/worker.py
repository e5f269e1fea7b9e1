"""`cvco-ipn worker`: the arq worker that processes queued notifications."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

import uvloop
from redis.asyncio import Redis
from redis.exceptions import RedisError

from cli.logs import configure_logging
from schemas.settings import Settings, load_settings
from workers.worker import build_worker


def register(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser(
        "worker",
        help="run a worker that processes queued notifications",
        description="Run an arq worker: apply queued notifications, publish events, park failures, "
        "sweep expired sessions and send alerts. Needs CVCO_SHOPS (it re-verifies every signature).",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--burst", action="store_true", help="drain the queue, then exit 0")
    mode.add_argument(
        "--check",
        action="store_true",
        help="health probe: exit 0 if a worker refreshed arq's health-check key recently, else 1",
    )
    parser.set_defaults(handler=run)


class _NoJobArguments(logging.Filter):
    """Drop arq's per-job start line: it prints the job's arguments, which carry the signature."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "→" not in str(record.msg)


def run(args: argparse.Namespace) -> int:
    if args.check:
        return _check(load_settings())
    settings = load_settings(require_shops=True)
    configure_logging()
    logging.getLogger("arq.worker").addFilter(_NoJobArguments())
    # arq takes the current loop when built: make it uvloop's, as the receiver does
    asyncio.set_event_loop(uvloop.new_event_loop())
    build_worker(settings, burst=args.burst).run()
    return 0


def _check(settings: Settings) -> int:
    """arq's own health check: the key a running worker rewrites every few seconds (it expires otherwise)."""
    key = build_worker(settings).health_check_key

    async def read() -> bytes | None:
        async with Redis.from_url(settings.redis_url, socket_timeout=settings.redis_timeout_s) as redis:
            value: bytes | None = await redis.get(key)
            return value

    try:
        value = asyncio.run(read())
    except (RedisError, OSError) as e:
        sys.stderr.write(f"cvco-ipn worker --check: Redis did not answer ({type(e).__name__})\n")
        return 1
    if value is None:
        sys.stderr.write(f"cvco-ipn worker --check: no worker refreshed {key} recently\n")
        return 1
    sys.stdout.write(value.decode("utf-8", "replace") + "\n")
    return 0
