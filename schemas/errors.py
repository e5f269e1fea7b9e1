"""How failures are classed: a permanent error parks the job at once, anything transient is retried."""

from __future__ import annotations

import asyncio

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


class PermanentError(Exception):
    """Retrying cannot help (unparsable content, unknown shop, bad signature): park for an operator."""


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    TimeoutError,
    asyncio.TimeoutError,
    OSError,
)
"""Failures of the machinery around a job (Redis, SMTP, network), worth retrying with backoff."""
