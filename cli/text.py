"""Showing platform text to a person: literally, on one line, with nothing a terminal would obey.

Every field the platform (or whoever holds a checkout page) signed can carry anything: rich markup
(`CMD-[/]` crashed a table, `[link=…]` became a hyperlink), ESC sequences (a terminal's title or screen),
a newline (a forged row in `failed list`), a lone surrogate (a crash when printed). Each CLI output path
goes through this module: `literal` for plain text, `cell` for rich tables, `json_text` for JSON.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from rich.console import Console
from rich.text import Text

_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
"""Direction overrides: they reorder what follows on screen, so an id could read as another."""

_BEYOND_C0 = f"\\x7f-\\x9f\\u2028\\u2029{_BIDI}\\ud800-\\udfff"
_UNSAFE = re.compile(f"[\\x00-\\x1f{_BEYOND_C0}]")
_UNSAFE_IN_JSON = re.compile(f"[{_BEYOND_C0}]")
"""`json.dumps` escapes C0 controls inside strings itself: a raw newline in its output is its layout."""


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char)
    return named or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def literal(value: object) -> str:
    """The value as one line of printable text: control, separator, bidi and surrogate characters are
    written as escapes (`\\n`, `\\x1b`, `\\u202e`); a backslash stays as it is."""
    return _UNSAFE.sub(_escape, str(value))


def is_safe(text: str) -> bool:
    """True when `literal(text) == text`: nothing in it would be escaped."""
    return _UNSAFE.search(text) is None


def cell(value: object) -> Text:
    """A rich table cell showing the value literally: a `Text` is never parsed as markup."""
    return Text(literal(value))


def json_text(data: Any, *, indent: int | None = None) -> str:
    """JSON with non-ASCII kept readable, but every character `literal` escapes written as `\\u` and four hex digits.

    `json.dumps` escapes C0 controls only; DEL, C1, U+2028 and bidi controls would go out raw, and a lone
    surrogate would fail at print. Outside strings JSON is plain ASCII, so each one is inside a string.
    """
    text = json.dumps(data, ensure_ascii=False, indent=indent)
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def is_terminal() -> bool:
    """Whether stdout is a person's terminal (tables, progress) rather than a pipe (plain lines)."""
    return sys.stdout.isatty()


def console() -> Console:
    """The console every command prints rich output on: no markup or highlighting of data, and, on a pipe,
    wide enough that values are never cut."""
    return Console(highlight=False, markup=False, emoji=False, width=None if is_terminal() else 200)
