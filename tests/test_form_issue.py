"""Issuing a form on the real Redis: fresh trans_id, signed fields, the session watched for expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis
from structlog.testing import capture_logs

from ingest.form import FormOrder
from ingest.form_issue import issue_form
from ingest.form_rules import FormRuleError
from ingest.signature import verify_signature
from ingest.trans_ids import PERMUTATION_KEY, trans_id_for
from schemas.notification import payment_key
from schemas.settings import Settings
from tests.conftest import SHOP_ID
from workers.sessions import SESSIONS_KEY, load_session

NOW = datetime(2024, 7, 14, 12, 0, 0, tzinfo=UTC)


async def test_an_issued_form_is_signed_and_its_session_is_watched(redis: Redis, settings: Settings) -> None:
    order = FormOrder(shop_id=SHOP_ID, amount=2990, order_id="CMD-1", mode="PRODUCTION")
    issued = await issue_form(redis, settings, order, now=NOW)

    secret = await redis.get(PERMUTATION_KEY)
    assert issued.fields["vads_trans_id"] == trans_id_for(0, SHOP_ID, "20240714", secret)
    assert issued.fields["vads_trans_date"] == "20240714120000"
    assert issued.action == settings.platform_url
    assert verify_signature(issued.fields, issued.form.signature, settings.shops[SHOP_ID]) == "valid"
    key = payment_key(SHOP_ID, "PRODUCTION", NOW, issued.fields["vads_trans_id"])
    session = await load_session(redis, key)
    assert session is not None
    assert session.registered_by == "form"
    assert (session.order_id, session.amount, session.mode) == ("CMD-1", 2990, "PRODUCTION")
    deadline = NOW + timedelta(seconds=settings.session_timeout_s + settings.session_grace_s)
    assert session.deadline == deadline
    assert await redis.zscore(SESSIONS_KEY, key) == deadline.timestamp()


async def test_a_lowered_capture_delay_is_returned_and_logged(redis: Redis, settings: Settings) -> None:
    order = FormOrder(shop_id=SHOP_ID, amount=2990, capture_delay=10)
    with capture_logs() as logs:
        issued = await issue_form(redis, settings, order, now=NOW)
    assert issued.fields["vads_capture_delay"] == "3"
    assert issued.as_json()["warnings"] == list(issued.form.warnings)
    adjusted = [entry for entry in logs if entry["event"] == "form_adjusted"]
    assert [entry["reason"] for entry in adjusted] == list(issued.form.warnings)
    assert adjusted[0]["log_level"] == "warning"


@pytest.mark.parametrize(
    ("order", "message"),
    [
        (FormOrder(shop_id="87654321", amount=2990), "vads_site_id='87654321': not a shop of CVCO_SHOPS"),
        (FormOrder(shop_id=SHOP_ID, amount=1500), "vads_amount='1500': at least 2000 cents"),
    ],
)
async def test_a_refused_request_watches_no_session(
    redis: Redis, settings: Settings, order: FormOrder, message: str
) -> None:
    with pytest.raises(FormRuleError, match=message):
        await issue_form(redis, settings, order, now=NOW)
    assert await redis.zcard(SESSIONS_KEY) == 0


async def test_the_json_view_holds_every_field_the_signature_and_the_action(
    redis: Redis, settings: Settings
) -> None:
    issued = await issue_form(redis, settings, FormOrder(shop_id=SHOP_ID, amount=2990), now=NOW)
    view = issued.as_json()
    assert view["fields"] == issued.fields
    assert view["signature"] == issued.fields["signature"]
    assert view["action"] == settings.platform_url
