"""`cvco-ipn serve`: the notification receiver."""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
from typing import Any

import structlog
from aiohttp import web

from cli.logs import configure_logging
from cli.runner import port_number
from core.redis_connection import exit_if_credentials_refused
from ingest.app import create_app
from schemas.settings import load_settings


def register(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser(
        "serve",
        help="run the notification receiver (POST /ipn)",
        description="Run the notification receiver: POST /ipn answers 200 once the notification is queued "
        "in Redis; also /healthz, /readyz, /metrics, and POST /forms when CVCO_API_TOKEN is set. "
        "Needs CVCO_SHOPS.",
    )
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")  # noqa: S104  # a server listens on all interfaces by default, per the contract
    parser.add_argument("--port", type=port_number, default=8080, help="port to listen on (default 8080)")
    parser.set_defaults(handler=run)


SHUTDOWN_TIMEOUT_S = 10.0
"""In-flight requests get this long at SIGTERM: below the usual 30 s grace of an orchestrator."""


def _event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def _freeze_heap(app: web.Application) -> None:
    """Once started, move every object so far out of the collector's sight.

    Start-up leaves tens of thousands of long-lived objects (modules, settings, the app): a full
    collection walks them all, a pause that the requests in flight would wait through.
    """
    gc.collect()
    gc.freeze()


def run(args: argparse.Namespace) -> int:
    settings = load_settings(require_shops=True)
    exit_if_credentials_refused(settings)
    configure_logging(contextvars=False)
    structlog.get_logger(__name__).info(
        "receiver_starting", host=args.host, port=args.port, shops=sorted(settings.shops)
    )
    app = create_app(settings)
    app.on_startup.append(_freeze_heap)
    try:
        web.run_app(
            app,
            host=args.host,
            port=args.port,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
            access_log=None,
            print=None,
            loop=_event_loop(),
        )
    except OSError as e:  # the address is taken, or not this machine's
        sys.stderr.write(f"cvco-ipn: cannot listen on {args.host}:{args.port}: {e.strerror or e}\n")
        return 2
    return 0
