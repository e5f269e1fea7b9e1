"""The signed Chèque-Vacances Connect payment form (seed guide §9–§10), built from a payment request.

Pure: no I/O. `build_form(request, shop)` gives the ordered fields and their signature, or raises
`FormRuleError` (one line: field, value, rule). `forms.issue` adds the trans_id and the session.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from core.signature import SIGNATURE_FIELD, sign_fields
from forms.rules import (
    CVCO_FIXED,
    CVCO_MAX_CAPTURE_DELAY,
    EXT_INFO_PREFIX,
    FIELD_FORMATS,
    FormRuleError,
    check_fields,
)
from schemas.settings import ShopConfig


class Customer(BaseModel):
    """The buyer (billing), §9.2: each attribute `x` is sent as `vads_cust_x`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    email: str | None = None
    id: str | None = None
    national_id: str | None = None
    title: str | None = None
    status: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    legal_name: str | None = None
    phone: str | None = None
    cell_phone: str | None = None
    address_number: str | None = None
    address: str | None = None
    address2: str | None = None
    district: str | None = None
    zip: str | None = None
    city: str | None = None
    state: str | None = None
    country: str | None = None


class Shipping(BaseModel):
    """The delivery, §9.3: each attribute `x` is sent as `vads_ship_to_x`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    first_name: str | None = None
    last_name: str | None = None
    legal_name: str | None = None
    status: str | None = None
    phone_num: str | None = None
    street_number: str | None = None
    street: str | None = None
    street2: str | None = None
    district: str | None = None
    zip: str | None = None
    city: str | None = None
    state: str | None = None
    country: str | None = None


class CartLine(BaseModel):
    """One cart line, §9.4: sent as `vads_product_<attr>N`, N counting from 0."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str
    amount: int
    qty: int = 1
    type: str
    ref: str | None = None
    ext_id: str | None = None


class FormOrder(BaseModel):
    """What a merchant asks for: the order, its buyer, delivery, cart and extra fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shop_id: str
    amount: int = Field(description="cents")
    order_id: str | None = None
    mode: str = "TEST"
    currency: str = "978"
    capture_delay: int | None = Field(None, description="days; above 3 is lowered to 3 with a warning")
    validation_mode: str | None = Field(None, description="refused: CVCO has no manual validation")
    customer: Customer = Customer()
    shipping: Shipping = Shipping()
    products: tuple[CartLine, ...] = ()
    ext_info: dict[str, str] = Field(default_factory=dict)
    order_info: str | None = None
    order_info2: str | None = None
    order_info3: str | None = None
    allow_cart_mismatch: bool = Field(False, description="warn instead of refusing a cart that does not sum")


class PaymentRequest(FormOrder):
    """An order with its transaction identity (see `forms.trans_ids`)."""

    trans_id: str
    trans_date: AwareDatetime


@dataclass(frozen=True, slots=True)
class SignedForm:
    """The form's fields in order (`vads_*` by name, then `signature`) and what was adjusted on the way."""

    fields: dict[str, str]
    warnings: tuple[str, ...] = ()

    @property
    def signature(self) -> str:
        return self.fields[SIGNATURE_FIELD]


def sign_form(fields: Mapping[str, str], shop: ShopConfig) -> dict[str, str]:
    """Exactly these `vads_*` fields, sorted by name, then their signature (the shop's first algorithm)."""
    ordered = {name: fields[name] for name in sorted(fields) if name.startswith("vads_")}
    ordered[SIGNATURE_FIELD] = sign_fields(ordered, shop, ordered.get("vads_ctx_mode", ""))
    return ordered


def build_form(request: PaymentRequest, shop: ShopConfig) -> SignedForm:
    """The signed CVCO form for this request; refuses with `FormRuleError` what breaks a rule."""
    fields, warnings = request_fields(request)
    check_fields(fields)
    if request.mode not in shop.modes:
        raise FormRuleError(
            "vads_ctx_mode", request.mode, f"shop {request.shop_id} does not accept this mode"
        )
    mismatch = _cart_mismatch(request)
    if mismatch and not request.allow_cart_mismatch:
        raise FormRuleError("vads_amount", str(request.amount), mismatch)
    if mismatch:
        warnings.append(f"vads_amount={request.amount}: {mismatch}")
    return SignedForm(sign_form(fields, shop), tuple(warnings))


def request_fields(request: PaymentRequest) -> tuple[dict[str, str], list[str]]:
    """The unsigned `vads_*` fields of a request (blank optional values left out), and the warnings."""
    warnings: list[str] = []
    fields = dict(CVCO_FIXED)
    fields.update(
        vads_site_id=request.shop_id,
        vads_ctx_mode=request.mode,
        vads_amount=str(request.amount),
        vads_currency=request.currency,
        vads_trans_id=request.trans_id,
        vads_trans_date=request.trans_date.astimezone(UTC).strftime("%Y%m%d%H%M%S"),
    )
    optional = {
        "vads_order_id": request.order_id,
        "vads_validation_mode": request.validation_mode,
        "vads_order_info": request.order_info,
        "vads_order_info2": request.order_info2,
        "vads_order_info3": request.order_info3,
    }
    optional.update({f"vads_cust_{name}": value for name, value in request.customer})
    optional.update({f"vads_ship_to_{name}": value for name, value in request.shipping})
    fields.update({name: value for name, value in optional.items() if value})
    if request.capture_delay is not None:
        fields["vads_capture_delay"] = _capture_delay(request.capture_delay, warnings)
    if request.products:
        fields["vads_nb_products"] = str(len(request.products))
    for index, line in enumerate(request.products):
        for attribute, value in line:
            if value is not None:
                fields[f"vads_product_{attribute}{index}"] = str(value)
    fields.update({EXT_INFO_PREFIX + name: value for name, value in request.ext_info.items()})
    return fields, warnings


def _capture_delay(days: int, warnings: list[str]) -> str:
    """§9.1: a delay above 3 days is lowered to 3 (the authorisation lasts 3 days)."""
    FIELD_FORMATS["vads_capture_delay"].check("vads_capture_delay", str(days))
    if days <= CVCO_MAX_CAPTURE_DELAY:
        return str(days)
    warnings.append(
        f"vads_capture_delay={days}: lowered to {CVCO_MAX_CAPTURE_DELAY}, "
        "the longest Chèque-Vacances Connect allows"
    )
    return str(CVCO_MAX_CAPTURE_DELAY)


def _cart_mismatch(request: PaymentRequest) -> str | None:
    """Why the cart lines (amount × qty) do not add up to the amount, or None when they do or are absent."""
    if not request.products:
        return None
    total = sum(line.amount * line.qty for line in request.products)
    if total == request.amount:
        return None
    return f"cart lines (amount x qty) sum to {total}, not to the amount"
