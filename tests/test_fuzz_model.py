"""Fuzzing the pure pieces behind `POST /ipn` and the worker: body parser, signature check, notification model.

Each may refuse, but only in its documented way: `BodyError`, a "mismatch"/"no_key" verdict,
`InvalidNotification`. Anything else would be a 500 at the receiver or a crashed job at the worker.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from core.signature import compute_signature, verify_signature
from ingest.body import BodyError, parse_form_body
from schemas.notification import InvalidNotification, parse_notification
from schemas.settings import ShopConfig
from tests.reliability.notifications import accepted_payment

SHOP = ShopConfig.model_validate(
    {
        "test_key": "1122334455667788",
        "production_key": "8877665544332211",
        "algorithms": ["HMAC-SHA-256", "SHA-1"],
    }
)
values = st.text(alphabet=st.characters(codec="utf-8"), max_size=120)


@settings(max_examples=1000, deadline=None)
@given(
    raw=st.one_of(
        st.binary(max_size=2048), st.text(max_size=512).map(lambda t: t.encode("utf-8", "surrogatepass"))
    )
)
def test_the_body_parser_returns_fields_or_a_body_error(raw: bytes) -> None:
    """Any bytes: a dict of str fields with distinct names, or `BodyError`, never another exception."""
    try:
        fields = parse_form_body(raw)
    except BodyError as e:
        assert str(e) and "\n" not in str(e)
        return
    assert all(isinstance(name, str) and isinstance(value, str) for name, value in fields.items())


@settings(max_examples=1000, deadline=None)
@given(
    changes=st.dictionaries(st.text(max_size=20).map(lambda s: "vads_" + s), values, min_size=1, max_size=5),
    signature=st.text(max_size=80),
    index=st.integers(0, 10**6),
)
def test_the_signature_check_accepts_only_the_exact_signature_of_the_exact_fields(
    changes: dict[str, str], signature: str, index: int
) -> None:
    """A valid signature stops matching once any vads_ field changes; an arbitrary string never matches."""
    fields = accepted_payment(index, "12345678", SHOP)
    genuine = fields.pop("signature")
    assert verify_signature(fields, genuine, SHOP) == "valid"
    assert verify_signature(fields, signature, SHOP) in ("mismatch", "valid")
    if signature not in (genuine, compute_signature(fields, "1122334455667788", "SHA-1")):
        assert verify_signature(fields, signature, SHOP) == "mismatch"
    altered = {**fields, **changes}
    if altered != fields:
        assert verify_signature(altered, genuine, SHOP) == "mismatch"


@settings(max_examples=1000, deadline=None)
@given(
    replaced=st.dictionaries(
        st.sampled_from(
            [
                "vads_amount",
                "vads_trans_id",
                "vads_trans_date",
                "vads_trans_uuid",
                "vads_ctx_mode",
                "vads_site_id",
                "vads_payment_seq",
                "vads_sequence_number",
                "vads_operation_type",
                "vads_presentation_date",
                "vads_currency",
                "vads_capture_delay",
                "vads_trans_status",
            ]
        ),
        st.one_of(values, st.sampled_from(["", "0", "-1", "9" * 40, "{}", '{"transactions": []}', "null"])),
        max_size=4,
    ),
    index=st.integers(0, 10**6),
)
def test_the_notification_model_parses_or_names_the_broken_field(
    replaced: dict[str, str], index: int
) -> None:
    """Signed content with absurd values: a `Notification` keeping every field, or `InvalidNotification`."""
    fields = {**accepted_payment(index, "12345678", SHOP), **replaced}
    try:
        notification = parse_notification(fields)
    except InvalidNotification as e:
        assert e.field.split(".")[0] in fields or e.rule == "is required"
        return
    assert notification.fields == fields
