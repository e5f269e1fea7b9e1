"""`cvco-ipn worker`: the arq worker that processes queued notifications."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from typing import Any

import structlog
import uvloop
from arq.constants import health_check_key_suffix
from redis.exceptions import RedisError

from cli.logs import configure_logging
from cli.runner import cannot_reach, port_number
from core.redis_connection import exit_if_credentials_refused, redis_client
from schemas.settings import Settings, load_settings
from workers.metrics import WorkerMetrics
from workers.worker import build_worker

RECONNECT_FIRST_S = 1.0
RECONNECT_MAX_S = 30.0
RECONNECT_RESET_AFTER_S = 60.0
"""A worker that ran this long before losing Redis starts again from the first, short pause."""

log = structlog.get_logger("cvco.worker")


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
    parser.add_argument(
        "--metrics-port",
        type=port_number,
        metavar="P",
        help="serve Prometheus metrics on GET /metrics at this port (jobs, events, parked jobs, alerts)",
    )
    parser.add_argument(
        "--metrics-host",
        default="0.0.0.0",  # noqa: S104  # scraped from outside the pod, as the receiver listens
        metavar="H",
        help="address of --metrics-port (default 0.0.0.0)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.check:
        return _check(load_settings())
    settings = load_settings(require_shops=True)
    exit_if_credentials_refused(settings)
    configure_logging()
    quiet_arq_job_lines()
    metrics = WorkerMetrics()
    if args.metrics_port is not None:
        try:
            metrics.serve(args.metrics_host, args.metrics_port)
        except OSError as e:
            sys.stderr.write(
                f"cvco-ipn: --metrics-port: cannot listen on {args.metrics_host}:{args.metrics_port}: {e}\n"
            )
            return 2
    # arq takes the current loop when built: make it uvloop's, as the receiver does
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    if args.burst:
        try:
            build_worker(settings, metrics=metrics, burst=True).run()
        except (RedisError, OSError) as e:
            sys.stderr.write(cannot_reach(settings, e) + "\n")
            return 1
        return 0
    return _run_until_stopped(loop, settings, metrics)


def _run_until_stopped(loop: asyncio.AbstractEventLoop, settings: Settings, metrics: WorkerMetrics) -> int:
    """Run a worker until SIGTERM/SIGINT; one that loses Redis is replaced after a growing pause.

    arq's worker exits on a Redis connection error; without this a Redis restart would leave the
    queue unprocessed until a supervisor noticed. Jobs it held come back once their in-progress key expires.
    """
    delay_s = RECONNECT_FIRST_S
    while True:
        started = time.monotonic()
        try:
            build_worker(settings, metrics=metrics).run()
            return 0  # a signal stopped it
        except (RedisError, OSError) as e:
            if time.monotonic() - started > RECONNECT_RESET_AFTER_S:
                delay_s = RECONNECT_FIRST_S
            log.warning("worker lost Redis", error=f"{type(e).__name__}: {e}", restart_in_s=delay_s)
        if _signalled_within(loop, delay_s):
            return 0
        delay_s = min(delay_s * 2, RECONNECT_MAX_S)


def _signalled_within(loop: asyncio.AbstractEventLoop, seconds: float) -> bool:
    """Wait, but let SIGTERM/SIGINT end the wait (and the process) at once."""
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        loop.run_until_complete(asyncio.wait_for(stop.wait(), seconds))
    except TimeoutError:
        return False
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return True


def quiet_arq_job_lines() -> None:
    """Keep arq's warnings, drop its info lines: the per-job start line prints the job's arguments, which
    carry the signature, and the end line repeats the worker's own "job done" summary."""
    logging.getLogger("arq.worker").setLevel(logging.WARNING)


def _check(settings: Settings) -> int:
    """arq's health check: the key a running worker rewrites every few seconds (it expires otherwise).

    Read with the deployment's own client (Sentinel, TLS, ACL), which arq's `RedisSettings` would not follow.
    """
    key = settings.queue_name + health_check_key_suffix

    async def read() -> bytes | None:
        async with redis_client(settings, socket_timeout_s=settings.redis_timeout_s) as redis:
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
