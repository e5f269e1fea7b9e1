"""The form-urlencoded body parser: lossless, strict UTF-8, refuses ambiguity."""

from __future__ import annotations

from urllib.parse import quote, unquote, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.body import BodyError, parse_form_body, signed_fields

# any text that UTF-8 can encode (lone surrogates cannot be sent by a form)
form_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)


def test_blank_values_plus_and_escapes_are_decoded_as_forms_encode_them() -> None:
    """Blank values are kept, `+` is a space, `%2B` a plus, and accents decode from UTF-8 escapes."""
    fields = parse_form_body(b"vads_a=&vads_b=a+b%2Bc&vads_c=%C3%A9t%C3%A9&vads_d=x%26y%3Dz")
    assert fields == {"vads_a": "", "vads_b": "a b+c", "vads_c": "été", "vads_d": "x&y=z"}


def test_values_are_never_stripped() -> None:
    """Leading and trailing spaces are part of the signed value and survive."""
    assert parse_form_body(b"vads_x=+padded+&vads_y=%09tab") == {"vads_x": " padded ", "vads_y": "\ttab"}


def test_a_segment_without_equals_is_a_blank_field_and_empty_segments_are_skipped() -> None:
    """`a&&b=1&` has two fields: `a` blank and `b`; the empty segments carry nothing."""
    assert parse_form_body(b"a&&b=1&") == {"a": "", "b": "1"}


def test_an_equals_sign_inside_a_raw_value_belongs_to_the_value() -> None:
    """Only the first `=` separates name from value."""
    assert parse_form_body(b"k=a=b") == {"k": "a=b"}


def test_duplicated_field_name_is_refused() -> None:
    """Which of two values was signed would be a guess, so the body is refused."""
    with pytest.raises(BodyError, match="more than once"):
        parse_form_body(b"vads_amount=100&vads_amount=200")


def test_duplicate_detected_after_decoding() -> None:
    """`vads%5Fx` and `vads_x` are the same field once decoded."""
    with pytest.raises(BodyError, match="more than once"):
        parse_form_body(b"vads_x=1&vads%5Fx=2")


def test_raw_bytes_that_are_not_utf8_are_refused() -> None:
    """A Latin-1 body (raw 0xE9) is not UTF-8."""
    with pytest.raises(BodyError, match="not UTF-8"):
        parse_form_body("vads_x=été".encode("latin-1"))


def test_escapes_that_decode_to_invalid_utf8_are_refused() -> None:
    """`%E9` alone is Latin-1 `é`, not UTF-8."""
    with pytest.raises(BodyError, match="not UTF-8"):
        parse_form_body(b"vads_x=%E9t%E9")


def test_empty_body_has_no_fields() -> None:
    """An empty body parses to no fields (the receiver then refuses it for lacking a signature)."""
    assert parse_form_body(b"") == {}


@given(st.dictionaries(form_text, form_text, max_size=12))
def test_urlencode_round_trips_for_any_fields(fields: dict[str, str]) -> None:
    """Whatever a form encodes (blank values, `+`, `&`, `=`, `%`, accents, emoji) decodes back exactly."""
    assert parse_form_body(urlencode(fields).encode("ascii")) == fields


@given(st.dictionaries(form_text, form_text, max_size=12))
def test_percent_encoding_every_space_round_trips_too(fields: dict[str, str]) -> None:
    """Encoders that write spaces as `%20` instead of `+` give the same fields."""
    body = urlencode(fields, quote_via=lambda text, *_: quote(text, safe=""))
    assert parse_form_body(body.encode("ascii")) == fields


@given(st.binary(max_size=200))
def test_garbage_bytes_raise_only_body_error(raw: bytes) -> None:
    """Arbitrary bytes either parse into text fields or raise BodyError, never anything else."""
    try:
        fields = parse_form_body(raw)
    except BodyError as e:
        assert str(e)
        assert "\n" not in str(e)
    else:
        assert all(isinstance(name, str) and isinstance(value, str) for name, value in fields.items())


# raw segments rich in what the fast %-decoder rewrites: backslashes, `x`, stray and partial escapes
escape_heavy = st.text(st.sampled_from(list("%\\x0123456789aAfFgG+é😀")), max_size=24)


@given(escape_heavy)
def test_percent_decoding_matches_urllib_unquote_strictly(text: str) -> None:
    """Any value decodes exactly as urllib's unquote(errors="strict"), and fails only where it fails."""
    try:
        expected: str | None = unquote(text.replace("+", " "), encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        expected = None
    try:
        fields: dict[str, str] | None = parse_form_body(f"v={text}".encode())
    except BodyError:
        fields = None
    assert fields == (None if expected is None else {"v": expected})


hostile_text = st.text(st.characters(), max_size=60)  # every category: controls, bidi, surrogates


@given(
    st.lists(
        st.tuples(hostile_text, hostile_text, st.sampled_from(["raw", "quoted", "broken"])),
        max_size=8,
    )
)
def test_any_unicode_in_any_field_parses_or_refuses_in_one_line_without_a_raw_control(
    pairs: list[tuple[str, str, str]],
) -> None:
    """Arbitrary Unicode (controls, lone surrogates, separators), sent raw, %-encoded, or with its
    surrogates as broken UTF-8: the parser returns the exact fields or a one-line BodyError whose text
    holds no raw control character (it becomes a 400's body)."""
    segments = []
    for name, value, how in pairs:
        encoded = [
            part.encode("utf-8", "surrogatepass" if how == "broken" else "replace") for part in (name, value)
        ]
        if how != "raw":
            encoded = [quote(part, safe="").encode() for part in encoded]
        segments.append(b"=".join(encoded))
    try:
        fields = parse_form_body(b"&".join(segments))
    except BodyError as e:
        assert str(e) and "\n" not in str(e) and str(e).isprintable()
    else:
        assert all(isinstance(name, str) and isinstance(value, str) for name, value in fields.items())


def test_a_body_of_too_many_fields_is_refused_before_decoding() -> None:
    """2,000 separators (2,001 fields) are refused at once, even when every segment is blank or undecodable."""
    with pytest.raises(BodyError, match="more than 2000 fields"):
        parse_form_body(b"&" * 2000 + b"\xff")
    assert len(parse_form_body(b"&".join(b"vads_%d=" % n for n in range(2000)))) == 2000


signed_or_not = st.one_of(
    form_text,
    form_text.map("vads_".__add__),
    st.just("signature"),
    st.sampled_from(["&vads_x", "x&vads_", ""]),
)


@given(st.dictionaries(signed_or_not, form_text, max_size=12), st.booleans())
def test_signed_fields_are_exactly_the_vads_fields_and_the_signature(
    fields: dict[str, str], raw_amp: bool
) -> None:
    """Whatever the other names (one holding `&vads_`, blank ones, empty segments): only `vads_*` and
    `signature` are kept, by the byte-count shortcut as by the pass over the names."""
    raw = urlencode(fields).encode() + (b"&&" if raw_amp else b"")
    parsed = parse_form_body(raw)
    expected = {
        name: value for name, value in parsed.items() if name.startswith("vads_") or name == "signature"
    }
    assert signed_fields(raw, parsed) == expected
