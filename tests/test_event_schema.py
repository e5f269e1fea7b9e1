"""schemas/event.schema.json is generated from PaymentEvent and lists every field of the contract."""

from __future__ import annotations

import json

from schemas.event import SCHEMA_PATH, schema_text

CONTRACT_FIELDS = {
    "event_id": "string",
    "type": "string",
    "shop_id": "string",
    "mode": "string",
    "trans_id": "string",
    "status": "string",
    "amount": "integer",
    "currency": "string",
    "paid_amount": "integer",
    "cvco_amount": "integer",
    "legs": "array",
    "customer": "object",
    "shipping": "object",
    "products": "array",
    "ext_info": "object",
    "received_at": "string",
}


def test_the_committed_schema_matches_the_model() -> None:
    """Regenerate with `python -m schemas.event` when PaymentEvent changes; this fails until then."""
    assert SCHEMA_PATH.read_text(encoding="utf-8") == schema_text()


def test_the_schema_has_every_contract_field_with_its_type_and_allows_extras() -> None:
    """Each contract field is required with the contract's JSON type; consumers may meet extra fields."""
    schema = json.loads(schema_text())
    properties = schema["properties"]
    for name, json_type in CONTRACT_FIELDS.items():
        assert name in schema["required"], name
        assert properties[name]["type"] == json_type, name
    for nullable in ("order_id", "trans_uuid", "source"):
        assert {"type": "null"} in properties[nullable]["anyOf"], nullable
    assert properties["auth_result"] == {"$ref": "#/$defs/AuthResult"}
    assert set(schema["$defs"]["Leg"]["required"]) >= {
        "sequence_number",
        "card_brand",
        "amount",
        "status",
        "auth_result",
        "trans_uuid",
    }
    assert schema["additionalProperties"] is True
