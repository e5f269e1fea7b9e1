"""Running an operator command against Redis: its settings, one client, and one-line failures.

Operator commands (`failed`, `replay`, `events`) never verify a signature, so they read the settings
without `CVCO_SHOPS`: a broken shop list must not keep an operator from looking at parked jobs.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from arq.connections import ArqRedis
from redis.exceptions import RedisError

from cli.text import literal
from schemas.settings import Settings, load_settings
from workers.worker import arq_client


class UsageError(Exception):
    """A bad argument: exit 2 with this one-line reason."""


_DURATION = re.compile(r"(\d+)\s*([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(value: str, now: float | None = None) -> float:
    """`2h`, `30m`, `1d` (ago) or an ISO date/time (UTC when no offset): epoch seconds."""
    current = time.time() if now is None else now
    match = _DURATION.fullmatch(value.strip())
    if match:
        return current - int(match.group(1)) * _UNIT_S[match.group(2)]
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise UsageError(f"--since {value!r}: expected a duration like 2h, 30m, 1d or an ISO date") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def port_number(text: str) -> int:
    """An argparse type: a TCP port to listen on, 1 to 65535 (0 would listen on a random one)."""
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1 to 65535)")
    return int(text)


Action = Callable[[ArqRedis, Settings, argparse.Namespace], Coroutine[Any, Any, int]]


def redis_location(url: str) -> str:
    """The Redis URL without its password, for a message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:***@" if parts.username else ":***@"
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=user + host))


def cannot_reach(settings: Settings, error: BaseException) -> str:
    """The one line every command prints when Redis does not answer."""
    return (
        f"cvco-ipn: cannot reach Redis at {redis_location(settings.redis_url)} (CVCO_REDIS_URL): "
        f"{type(error).__name__}: {literal(error)}"
    )


def run_with_redis(action: Action, args: argparse.Namespace, *, interrupted: int = 130) -> int:
    """Run `action(redis, settings, args)` on a fresh event loop; a usage error exits 2, Redis down 1,
    Ctrl-C `interrupted` (0 for a command that runs until stopped), each with one line at most."""
    settings = load_settings(without_shops=True)

    async def main() -> int:
        redis = arq_client(settings, socket_timeout_s=settings.redis_timeout_s * 5)
        try:
            return await action(redis, settings, args)
        finally:
            await redis.aclose(close_connection_pool=True)

    try:
        return asyncio.run(main())
    except UsageError as e:
        sys.stderr.write(f"cvco-ipn: {e}\n")
        return 2
    except (RedisError, OSError) as e:
        sys.stderr.write(cannot_reach(settings, e) + "\n")
        return 1
    except KeyboardInterrupt:
        return interrupted
