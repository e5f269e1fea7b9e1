"""structlog, configured once per process: JSON when stderr is not a terminal, stdlib logs routed through.

structlog's own events are rendered by its processors and written straight to stderr, not handed to the
stdlib `logging` machinery (a LogRecord, handler locks, a formatter): that detour cost the receiver about
a quarter of its time per request. The stdlib's records (arq, aiohttp) get the same processors through a
`ProcessorFormatter`, so both kinds of line carry the same keys.

`configure_logging(buffered=True)` (the receiver) goes one step further: the lines an event-loop turn
renders are written together, by one write at the start of the next turn (or at once when 256 are waiting,
outside an event loop, and at exit), instead of one write and flush per line. The cost: a `kill -9` may
lose the lines of the last loop turn. Never a notification: a notification is answered only after Redis
holds its job, whatever becomes of its log line. Its JSON lines also go through one processor,
`_JsonLine`, instead of the chain of six, and its `info` calls hand their keys to it directly instead
of through structlog's generic dispatch (which repacks the keys into new dicts three times): the same
line, at about 40 % of the instructions.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import json as stdlib_json
import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from structlog.contextvars import STRUCTLOG_KEY_PREFIX, STRUCTLOG_KEY_PREFIX_LEN

from schemas.literal import literal


def _write_to_stderr(data: bytes) -> None:
    stream = sys.stderr  # looked up per write: pytest and daemons may swap it
    binary = getattr(stream, "buffer", None)
    if binary is None:
        stream.write(data.decode("utf-8"))
        stream.flush()
        return
    stream.flush()  # whatever the stdlib handler wrote through the text layer goes first
    binary.write(data)
    binary.flush()


def _as_line(line: str | bytes) -> bytes:
    return (line.encode("utf-8") if isinstance(line, str) else line) + b"\n"


class StderrLogger:
    """structlog's final logger: one rendered line to the current `sys.stderr`, flushed at once."""

    def __init__(self, name: str = "root") -> None:
        # read by `add_logger_name`, as on a stdlib logger
        self.name = name

    def msg(self, line: str | bytes) -> None:
        _write_to_stderr(_as_line(line))

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


class _TurnBuffer:
    """Lines rendered during one event-loop turn, written to stderr together when the next turn starts."""

    MAX_LINES = 256

    def __init__(self) -> None:
        self._lines: list[bytes] = []
        self._flush_on: asyncio.AbstractEventLoop | None = None

    def add(self, line: bytes) -> None:
        self._lines.append(line)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop in this thread: nothing would flush later
            self.flush()
            return
        if len(self._lines) >= self.MAX_LINES:
            self.flush()
        elif self._flush_on is not loop:
            # none scheduled yet, or on a loop that stopped before running it: this loop flushes
            loop.call_soon(self.flush)
            self._flush_on = loop

    def flush(self) -> None:
        """Write every waiting line now (also registered to run at exit)."""
        self._flush_on = None
        if self._lines:
            lines, self._lines = self._lines, []
            _write_to_stderr(b"".join(lines))


_TURN_BUFFER = _TurnBuffer()
atexit.register(_TURN_BUFFER.flush)
flush_logs = _TURN_BUFFER.flush


class BufferedStderrLogger(StderrLogger):
    """`StderrLogger`, writing once per event-loop turn instead of once per line."""

    def msg(self, line: str | bytes) -> None:
        _TURN_BUFFER.add(_as_line(line))

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


class _StdlibHandler(logging.StreamHandler):  # type: ignore[type-arg]  # the stream's type is not needed here
    """The stdlib's records, written after the structlog lines still waiting in the turn buffer."""

    def emit(self, record: logging.LogRecord) -> None:
        _TURN_BUFFER.flush()
        super().emit(record)


class _UtcTimeStamper:
    """`TimeStamper(fmt="iso", utc=True)`'s exact text, formatting the date and time once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, logger: Any, method_name: str, event_dict: Any) -> Any:
        event_dict["timestamp"] = self.text(time.time_ns() // 1000)
        return event_dict

    def text(self, unix_us: int) -> str:
        """The ISO 8601 UTC text of a time in microseconds since the epoch, as `TimeStamper` writes it."""
        second, micro = divmod(unix_us, 1_000_000)
        if second != self._second:
            self._prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = second
        # isoformat() leaves the fraction out when it is zero
        return f"{self._prefix}.{micro:06d}Z" if micro else f"{self._prefix}Z"


def _dumps(value: Any, **kwargs: Any) -> bytes:
    """orjson, falling back to the stdlib for what orjson refuses (non-str keys, integers over 64 bits)."""
    try:
        return orjson.dumps(value, **kwargs)
    except orjson.JSONEncodeError:
        return stdlib_json.dumps(value, **kwargs).encode("utf-8")


_LEVEL_NAMES = {"warn": "warning", "exception": "error"}
"""`add_log_level`'s renames; every other method name is its level."""


class _JsonLine:
    """The shared processors, `format_exc_info` and the JSON renderer in one call, for the hot path.

    Same keys and values as the chain: context variables merged under the event's own keys, `level`,
    `logger`, `timestamp`, the formatted exception if any; rendered to bytes by orjson.
    """

    def __init__(self) -> None:
        self._stamper = _UtcTimeStamper()

    def __call__(self, logger: Any, method_name: str, event_dict: Any) -> bytes:
        # one pass over (variable, value) pairs: merge_contextvars looks each value up a second time
        for variable, value in contextvars.copy_context().items():
            name = variable.name
            if value is not Ellipsis and name.startswith(STRUCTLOG_KEY_PREFIX):
                event_dict.setdefault(name[STRUCTLOG_KEY_PREFIX_LEN:], value)
        event_dict["level"] = _LEVEL_NAMES.get(method_name, method_name)
        event_dict["logger"] = logger.name
        event_dict["timestamp"] = self._stamper.text(time.time_ns() // 1000)
        if "exc_info" in event_dict:
            event_dict = structlog.processors.format_exc_info(logger, method_name, event_dict)
        return _dumps(event_dict)


def _buffered_json_wrapper(min_level: int) -> type[structlog.typing.FilteringBoundLogger]:
    """structlog's filtering logger class, whose `info` calls `_JsonLine` directly when it is the chain.

    Same event dict as structlog builds (bound context, then the call's keys, then `event`); any other
    chain (a test capturing lines, say) or %-style arguments take structlog's own path.
    """
    base = structlog.make_filtering_bound_logger(min_level)
    if min_level > logging.INFO:
        return base  # info lines are dropped anyway

    def info(self: Any, event: str, *args: Any, **kw: Any) -> Any:
        processors = self._processors
        if args or len(processors) != 1 or not isinstance(processors[0], _JsonLine):
            return base.info(self, event, *args, **kw)
        event_dict = {**self._context, **kw} if self._context else kw
        event_dict["event"] = event
        return self._logger.info(processors[0](self._logger, "info", event_dict))

    return type("BufferedJsonBoundLogger", (base,), {"info": info})


def _dumps_text(value: Any, **kwargs: Any) -> str:
    """The same, as str: the stdlib formatter must return one."""
    return _dumps(value, **kwargs).decode("utf-8")


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


def configure_logging(level: str = "INFO", *, json: bool | None = None, buffered: bool = False) -> None:
    """Route structlog and the stdlib (arq, aiohttp) through the same processors, to stderr.

    `buffered`: structlog's lines are written once per event-loop turn (see the module's docstring).
    """
    as_json = not sys.stderr.isatty() if json is None else json
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _UtcTimeStamper(),
    ]
    console = _literal_values(structlog.dev.ConsoleRenderer(colors=False))
    processors: list[structlog.types.Processor] = [
        *shared,
        structlog.processors.format_exc_info,
        structlog.processors.JSONRenderer(serializer=_dumps) if as_json else console,
    ]
    hot = buffered and as_json
    make_wrapper = _buffered_json_wrapper if hot else structlog.make_filtering_bound_logger
    structlog.configure(
        processors=[_JsonLine()] if hot else processors,
        logger_factory=BufferedStderrLogger if buffered else StderrLogger,
        wrapper_class=make_wrapper(logging.getLevelName(level)),
        cache_logger_on_first_use=True,
    )
    foreign_renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(serializer=_dumps_text) if as_json else console
    )
    handler = _StdlibHandler(sys.stderr)
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
