"""A payment's history and the lookup indexes: what `workers.apply`'s script writes beside the state.

Redis layout (written only by that script, in the same step as the state, so they cannot disagree):

- the history, in the payment's record (`workers.record`): one compact JSON entry per notification the
  worker applied to the payment (`published`, `duplicate` or `stale`) and per session expiry it detected,
  oldest first, at most `HISTORY_CAP`; the record counts the entries dropped to keep that cap. It lives
  exactly as long as the state, being in the same key.
- `cvco:ref:<value>` (set): the payment keys an order id, a `vads_trans_uuid` (of any transaction) or a
  `vads_trans_id` names, whatever the shop or mode (the lookup needs no shop list). It expires
  `PAYMENT_TTL_S` after its last addition; a member whose payment expired first is skipped on read.

Entry fields (short: the history is paid per notification): `k` kind (`n` notification, `x` expiry), `at`
received at (ISO 8601 UTC), `src`, `st`, `uuid`, `tid` (trans_id), `rid` request id, `did` what the worker
did, `ev`/`eid` the event published (type, event_id) and `sid` its stream id, added by the script.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from schemas.job import QueuedNotification
from workers.decide import Decision
from workers.payment import PaymentState

HISTORY_CAP = 50
"""Entries kept per payment: a payment's life is a handful of notifications; a storm keeps its latest."""


def notification_entry(queued: QueuedNotification) -> dict[str, Any]:
    """What the history keeps of a received notification, before the worker decided on it."""
    fields = queued.fields
    return {
        "k": "n",
        "at": queued.received_at.isoformat(),
        "src": fields.get("vads_url_check_src"),
        "st": fields.get("vads_trans_status"),
        "uuid": (fields.get("vads_trans_uuid") or "").lower() or None,
        "tid": fields.get("vads_trans_id"),
        "rid": queued.request_id,
    }


def parked_entry(queued: QueuedNotification, error: BaseException) -> str:
    """The entry of a notification parked as failed: it changed nothing, and the failed list holds it."""
    entry = {**notification_entry(queued), "did": "parked", "err": type(error).__name__}
    return json.dumps(entry, separators=(",", ":"), ensure_ascii=False)


def expiry_entry(now: datetime) -> dict[str, Any]:
    """What the history keeps of a session expiry the workers detected themselves."""
    return {"k": "x", "at": now.isoformat(), "src": "SESSION_TIMEOUT", "st": "EXPIRED"}


def entry_json(entry: dict[str, Any], decision: Decision) -> str:
    """The entry with what the worker did; a JSON object the script may extend with `sid`."""
    done = {**entry, "did": decision.result}
    if decision.event is not None:
        done["ev"] = decision.event.type
        done["eid"] = decision.event.event_id
    return json.dumps(done, separators=(",", ":"), ensure_ascii=False)


def refs_of(state: PaymentState, entry: dict[str, Any]) -> str:
    """The index values naming this payment, one a line: order id, trans_ids, every trans_uuid."""
    values = {state.order_id, state.trans_id.lower(), entry.get("uuid"), (entry.get("tid") or "").lower()}
    for tx in (*state.legs.values(), *state.refunds.values()):
        values.add(tx.trans_uuid)
    return "\n".join(sorted(value for value in values if value and "\n" not in value))
