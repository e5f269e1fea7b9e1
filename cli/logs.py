"""structlog, configured once per process: JSON lines on stderr when it is not a terminal.

structlog's own events take its documented fast path (a filtering bound logger, an orjson `JSONRenderer`,
bytes written by `BytesLogger`); the stdlib's records (arq, aiohttp) get the same processors through a
`ProcessorFormatter`, so both kinds of line carry the same keys.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog

from schemas.literal import literal


def _orjson_dumps(value: Any, **kwargs: Any) -> bytes:
    """orjson, with the fallback `default` structlog hands in; a non-str key (an int) becomes a string."""
    return orjson.dumps(
        value, default=kwargs.get("default"), option=orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z
    )


def _orjson_text(value: Any, **kwargs: Any) -> str:
    """The same JSON as str: the stdlib formatter must return one."""
    return _orjson_dumps(value, **kwargs).decode("utf-8")


def _add_utc_now(logger: Any, method_name: str, event_dict: Any) -> Any:
    """The line's time as a datetime, which orjson writes as `TimeStamper(fmt="iso", utc=True)` would
    (ISO 8601 ending in Z) in a tenth of the time."""
    event_dict["timestamp"] = datetime.now(UTC)
    return event_dict


def _literal_values(render: structlog.types.Processor) -> structlog.types.Processor:
    """`render` with the event and the traceback shown `literal` (the traceback keeps its line breaks).

    A terminal obeys the escape sequences a logged text may hold; the console renderer writes every
    other value with `repr`, which escapes them already, but these two as they are.
    """

    def literal_render(logger: Any, method_name: str, event_dict: Any) -> Any:
        for key in ("event", "exception"):
            if isinstance(event_dict.get(key), str):
                event_dict[key] = literal(event_dict[key], keep_newlines=key == "exception")
        return render(logger, method_name, event_dict)

    return literal_render


def configure_logging(level: str = "INFO", *, json: bool | None = None, contextvars: bool = True) -> None:
    """Route structlog and the stdlib (arq, aiohttp) through the same processors, to stderr.

    `contextvars=False` leaves structlog's context variables out of every line: for the receiver, which
    binds none (its lines carry the request's `RequestContext`) and would pay for the lookup per line.
    """
    as_json = not sys.stderr.isatty() if json is None else json
    shared: list[structlog.types.Processor] = [
        *([structlog.contextvars.merge_contextvars] if contextvars else []),
        structlog.processors.add_log_level,
        _add_utc_now if as_json else structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    console = _literal_values(structlog.dev.ConsoleRenderer(colors=False))
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(serializer=_orjson_dumps) if as_json else console
    )
    logger_factory: Callable[..., Any] = (
        structlog.BytesLoggerFactory(sys.stderr.buffer)
        if as_json
        else structlog.WriteLoggerFactory(sys.stderr)
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        logger_factory=logger_factory,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(serializer=_orjson_text) if as_json else console,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's per-request access line duplicates the receiver's own summary line
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
