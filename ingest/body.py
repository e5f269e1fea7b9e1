"""Decode an `application/x-www-form-urlencoded` body into its fields, strictly and losslessly.

The signature covers every received value byte for byte, so nothing is dropped, stripped or guessed:
blank values are kept, `+` is a space and `%XX` an octet exactly as HTML forms encode them, the result
must be valid UTF-8, and a field name given twice is refused (which value was signed would be a guess).
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes


class BodyError(ValueError):
    """The body is not a usable form-urlencoded notification; the message is a one-line reason."""


def _decode(part: bytes, what: str) -> str:
    try:
        return unquote_to_bytes(part.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError(f"{what} is not UTF-8 once %-decoded") from None


def parse_form_body(raw: bytes) -> dict[str, str]:
    """The fields of a form-urlencoded body, in order; raises `BodyError` on anything ambiguous.

    An empty segment (`a=1&&b=2`, a trailing `&`) carries no field and is skipped, as browsers do;
    a segment without `=` is a field with a blank value.
    """
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError("body is not UTF-8") from None
    fields: dict[str, str] = {}
    for segment in raw.split(b"&"):
        if not segment:
            continue
        raw_name, _, raw_value = segment.partition(b"=")
        name = _decode(raw_name, "a field name")
        if name in fields:
            raise BodyError(f"field {name[:64]!r} appears more than once")
        fields[name] = _decode(raw_value, f"field {name[:64]!r}")
    return fields
