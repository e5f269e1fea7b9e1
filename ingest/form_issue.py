"""Issuing a payment form: allocate the transaction identity, build and sign, watch the session.

Shared by `cvco-ipn form` and `POST /forms`; the only I/O is Redis (the trans_id counter and the session).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

import structlog
from redis.asyncio import Redis

from ingest.form import FormOrder, PaymentRequest, SignedForm, build_form
from ingest.form_html import render_form, render_page
from ingest.form_rules import FormRuleError
from ingest.trans_ids import allocate_trans_id
from schemas.session import PendingPayment, session_deadline
from schemas.settings import Mode, Settings
from workers.sessions import track_session

log = structlog.get_logger("ingest.form")

PROBE_TRANS_ID = "000000"
"""The id the rules are first checked with: every rule holds or fails alike whatever the id."""


@dataclass(frozen=True, slots=True)
class IssuedForm:
    """A signed form ready to send to the buyer's browser, and where it posts."""

    form: SignedForm
    action: str
    request: PaymentRequest

    @property
    def fields(self) -> dict[str, str]:
        return self.form.fields

    def page(self, *, auto_submit: bool = False) -> str:
        return render_page(self.fields, self.action, auto_submit=auto_submit)

    def fragment(self) -> str:
        return render_form(self.fields, self.action)

    def as_json(self) -> dict[str, object]:
        return {
            "fields": self.fields,
            "signature": self.form.signature,
            "action": self.action,
            "warnings": list(self.form.warnings),
        }


async def issue_form(
    redis: Redis, settings: Settings, order: FormOrder, *, now: datetime | None = None
) -> IssuedForm:
    """A signed form for `order` with a fresh trans_id, its session watched for silent expiry.

    Raises `FormRuleError` for a request that breaks a rule (unknown shop included); nothing is
    watched and no trans_id is claimed then.
    """
    shop = settings.shops.get(order.shop_id)
    if shop is None:
        raise FormRuleError("vads_site_id", order.shop_id, "not a shop of CVCO_SHOPS")
    # every rule is checked before an id is claimed, so a refused request spends none
    build_form(
        PaymentRequest(**order.model_dump(), trans_id=PROBE_TRANS_ID, trans_date=now or datetime.now(UTC)),
        shop,
    )
    identity = await allocate_trans_id(redis, order.shop_id, now)
    request = PaymentRequest(**order.model_dump(), trans_id=identity.trans_id, trans_date=identity.trans_date)
    form = build_form(request, shop)
    bound = log.bind(shop_id=order.shop_id, order_id=order.order_id, trans_id=identity.trans_id)
    for warning in form.warnings:
        bound.warning("form_adjusted", reason=warning)
    deadline = session_deadline(identity.trans_date, settings)
    await track_session(
        redis,
        PendingPayment(
            shop_id=order.shop_id,
            mode=cast(Mode, request.mode),  # build_form refused any other mode
            trans_id=identity.trans_id,
            trans_date=identity.trans_date,
            order_id=order.order_id,
            amount=order.amount,
            deadline=deadline,
            registered_by="form",
        ),
    )
    bound.info("form_issued", mode=request.mode, amount=order.amount)
    return IssuedForm(form, settings.platform_url, request)
