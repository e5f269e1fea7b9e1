"""A request body: read within a deadline, decoded strictly and losslessly into its form fields.

The signature covers every received value byte for byte, so nothing is dropped, stripped or guessed:
blank values are kept, `+` is a space and `%XX` an octet exactly as HTML forms encode them, the result
must be valid UTF-8, and a field name given twice is refused (which value was signed would be a guess).
Only the signed fields (`signed_fields`) go further than the receiver.
"""

from __future__ import annotations

import asyncio
import codecs
from collections.abc import Awaitable
from urllib.parse import unquote

from aiohttp import web

from ingest.rejections import Rejected
from ingest.signature import SIGNATURE_FIELD

MAX_FIELDS = 2000
"""Fields a body may hold: a notification has well under 1,000 even with a long cart. Counted before
anything is decoded, so 64 KiB of blank fields costs a scan, not thousands of decodes."""


class BodyError(ValueError):
    """The body is not a usable form-urlencoded notification; the message is a one-line reason."""


def _unquote(part: str) -> str:
    """`unquote(part, errors="strict")`, in C for the usual case: `%XX` becomes `\\xXX` for escape_decode."""
    try:
        try:
            octets, _ = codecs.escape_decode(part.replace("\\", "\\\\").replace("%", "\\x"))
        except ValueError:
            # a `%` not followed by two hex digits stays as it is, which escape_decode refuses: urllib's way
            return unquote(part, encoding="utf-8", errors="strict")
        return octets.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError(f"{part[:64]!r} is not UTF-8 once %-decoded") from None


def parse_form_body(raw: bytes) -> dict[str, str]:
    """The fields of a form-urlencoded body, in order; raises `BodyError` on anything ambiguous.

    An empty segment (`a=1&&b=2`, a trailing `&`) carries no field and is skipped, as browsers do;
    a segment without `=` is a field with a blank value.
    """
    if raw.count(b"&") >= MAX_FIELDS:
        raise BodyError(f"more than {MAX_FIELDS} fields")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError("body is not UTF-8") from None
    # `+` is never a separator, so it can become a space before splitting; `%2B` is decoded after
    pairs = [segment.partition("=") for segment in text.replace("+", " ").split("&") if segment]
    fields = {
        (_unquote(name) if "%" in name else name): (_unquote(value) if "%" in value else value)
        for name, _, value in pairs
    }
    if len(fields) != len(pairs):
        seen: set[str] = set()
        for name in (_unquote(name) for name, _, _ in pairs):
            if name in seen:
                raise BodyError(f"field {name[:64]!r} appears more than once")
            seen.add(name)
    return fields


def signed_fields(raw: bytes, fields: dict[str, str]) -> dict[str, str]:
    """The fields of `raw` the signature covers, `vads_*` and `signature`, the only ones ever queued.

    Usually the body held no other: every `&`-separated segment of the raw bytes then starts with
    `vads_` or is `signature=`, which a few byte counts tell (a `&` in a name or value is always
    %-encoded), and `fields` is returned as it is, without a pass over its names.
    """
    signature = raw.startswith(b"signature=") or b"&signature=" in raw
    if raw.startswith(b"vads_") + raw.count(b"&vads_") + signature == raw.count(b"&") + 1:
        return fields
    return {
        name: value for name, value in fields.items() if name.startswith("vads_") or name == SIGNATURE_FIELD
    }


def read_body(request: web.Request, timeout_s: float) -> Awaitable[bytes]:
    """The whole body, or `Rejected` (408) when the client has not sent it within `timeout_s`.

    Without it a client that stops mid-body holds its request, and its connection, for ever. The usual
    notification came whole with its headers: it is read at once, with no timer and no extra coroutine.
    """
    if request.content.is_eof():
        return request.read()
    return _read_within(request, timeout_s)


async def _read_within(request: web.Request, timeout_s: float) -> bytes:
    try:
        async with asyncio.timeout(timeout_s):
            return await request.read()
    except TimeoutError:
        raise Rejected(408, "client_gone", f"body not received within {timeout_s:g} s") from None
