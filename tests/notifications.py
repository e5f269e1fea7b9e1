"""Builders of realistic signed notifications (single CVCO, cascade, refund, cancel) for the worker tests."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from arq.connections import ArqRedis

from core.signature import sign_fields
from schemas.event import PaymentEvent
from schemas.job import PROCESS_NOTIFICATION, QueuedNotification, notification_job_id
from schemas.settings import Settings, ShopConfig
from tests.conftest import SHOP_ID
from workers.decide import Decision
from workers.worker import build_worker

TRANS_DATE = "20240501120000"
TRANS_ID = "Ab12Cd"
UUID_PAY = "a" * 32
UUID_CB = "b" * 32
UUID_REFUND = "c" * 32
RECEIVED_AT = datetime(2024, 5, 1, 12, 1, tzinfo=UTC)


def notification(
    status: str = "AUTHORISED",
    *,
    amount: int = 5000,
    uuid: str = UUID_PAY,
    source: str = "PAY",
    operation: str | None = "DEBIT",
    auth: str | None = "0",
    brand: str | None = "CVCO",
    currency: str = "978",
    trans_id: str = TRANS_ID,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """A single (non-cascade) notification's vads_* fields, unsigned."""
    fields = {
        "vads_site_id": SHOP_ID,
        "vads_ctx_mode": "TEST",
        "vads_trans_id": trans_id,
        "vads_trans_date": TRANS_DATE,
        "vads_trans_uuid": uuid,
        "vads_trans_status": status,
        "vads_order_id": "order-42",
        "vads_amount": str(amount),
        "vads_effective_amount": str(amount),
        "vads_currency": currency,
        "vads_url_check_src": source,
        "vads_hash": "f" * 64,
        "vads_cust_email": "buyer@example.org",
        "vads_cust_last_name": "Durand",
        "vads_ship_to_city": "Lyon",
        "vads_nb_products": "1",
        "vads_product_label0": "Séjour",
        "vads_product_amount0": str(amount),
        "vads_ext_info_booking": "B-7",
        "vads_card_number": "CVCO-****-1234",
        "vads_version": "V2",
    }
    optional = {
        "vads_operation_type": operation,
        "vads_auth_result": auth,
        "vads_card_brand": brand,
        "vads_sequence_number": "1" if operation else None,
    }
    fields.update({name: value for name, value in optional.items() if value is not None})
    fields.update(extra or {})
    return fields


def leg(seq: int, brand: str, amount: int, status: str, uuid: str, auth: str = "0") -> dict[str, Any]:
    """One `vads_payment_seq` transaction."""
    return {
        "amount": amount,
        "operation_type": "DEBIT",
        "auth_result": auth,
        "capture_delay": 0,
        "card_brand": brand,
        "card_number": "****",
        "sequence_number": seq,
        "trans_id": TRANS_ID,
        "trans_uuid": uuid,
        "trans_status": status,
        "presentation_date": "2024-05-01T12:00:00Z",
    }


def cascade(legs: list[dict[str, Any]], *, amount: int = 10000, source: str = "PAY") -> dict[str, str]:
    """A cascade (MULTI, sequence 0) notification listing `legs`."""
    statuses = {item["trans_status"] for item in legs}
    overall = "AUTHORISED" if statuses & {"AUTHORISED", "CAPTURED"} else sorted(statuses)[0]
    fields = notification(overall, amount=amount, source=source, brand="MULTI")
    fields["vads_sequence_number"] = "0"
    fields["vads_payment_seq"] = json.dumps({"trans_id": TRANS_ID, "transactions": legs})
    return fields


def signed(fields: dict[str, str], shop: ShopConfig) -> dict[str, str]:
    """The fields with their `signature`, as the platform would post them."""
    return {**fields, "signature": sign_fields(fields, shop, fields["vads_ctx_mode"])}


def queued(fields: dict[str, str], shop: ShopConfig) -> QueuedNotification:
    """The job argument the receiver would queue for these (signed here) fields."""
    return QueuedNotification(
        fields=signed(fields, shop), received_at=RECEIVED_AT, client_ip="127.0.0.1", request_id="test"
    )


async def enqueue_notification(pool: ArqRedis, settings: Settings, job: QueuedNotification) -> str:
    """Queue the job as the receiver would (same function, id and queue); its job id."""
    job_id = notification_job_id(job.fields)
    await pool.enqueue_job(
        PROCESS_NOTIFICATION, job.model_dump(mode="json"), _job_id=job_id, _queue_name=settings.queue_name
    )
    return job_id


async def drain(settings: Settings, workers: int = 1) -> int:
    """Run burst workers until the queue is empty; the number of jobs that failed."""
    built = [build_worker(settings, burst=True, poll_delay=0, handle_signals=False) for _ in range(workers)]
    try:
        await asyncio.gather(*(worker.main() for worker in built))
    finally:
        for worker in built:
            await worker.close()
    return sum(worker.jobs_failed for worker in built)


def event_of(decision: Decision) -> PaymentEvent:
    """The event the decision publishes; fails the test when it publishes none."""
    assert decision.event is not None, "the decision publishes no event"
    return decision.event
