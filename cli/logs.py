"""structlog, configured once per process: JSON when stderr is not a terminal, stdlib logs routed through.

structlog's own events are rendered by its processors and written straight to stderr, not handed to the
stdlib `logging` machinery (a LogRecord, handler locks, a formatter): that detour cost the receiver about
a quarter of its time per request. The stdlib's records (arq, aiohttp) get the same processors through a
`ProcessorFormatter`, so both kinds of line carry the same keys.
"""

from __future__ import annotations

import json as stdlib_json
import logging
import sys
from typing import Any

import orjson
import structlog


class StderrLogger:
    """structlog's final logger: one rendered line to the current `sys.stderr`, flushed at once."""

    def __init__(self, name: str = "root") -> None:
        # read by `add_logger_name`, as on a stdlib logger
        self.name = name

    def msg(self, line: str | bytes) -> None:
        stream = sys.stderr  # looked up per line: pytest and daemons may swap it
        stream.write((line.decode("utf-8") if isinstance(line, bytes) else line) + "\n")
        stream.flush()

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def _dumps(value: Any, **kwargs: Any) -> bytes:
    """orjson, falling back to the stdlib for what orjson refuses (non-str keys, integers over 64 bits)."""
    try:
        return orjson.dumps(value, **kwargs)
    except orjson.JSONEncodeError:
        return stdlib_json.dumps(value, **kwargs).encode("utf-8")


def _dumps_text(value: Any, **kwargs: Any) -> str:
    """The same, as str: the stdlib formatter must return one."""
    return _dumps(value, **kwargs).decode("utf-8")


def configure_logging(level: str = "INFO", *, json: bool | None = None) -> None:
    """Route structlog and the stdlib (arq, aiohttp) through the same processors, to stderr."""
    as_json = not sys.stderr.isatty() if json is None else json
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    console = structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_dumps) if as_json else console,
        ],
        logger_factory=StderrLogger,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        cache_logger_on_first_use=True,
    )
    foreign_renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(serializer=_dumps_text) if as_json else console
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                foreign_renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's per-request access line duplicates the receiver's own summary line
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
