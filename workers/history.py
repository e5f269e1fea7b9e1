"""A payment's history and the lookup indexes: what `workers.apply`'s script writes beside the state.

Redis layout (written only by that script, in the same step as the state, so they cannot disagree):

- the history, in the payment's record (`workers.record`): one compact JSON entry per notification the
  worker applied to the payment (`published`, `duplicate` or `stale`) and per session expiry it detected,
  oldest first, at most `HISTORY_CAP`; the record counts the entries dropped to keep that cap. It lives
  exactly as long as the state, being in the same key.
- `cvco:refs:<index day>:<bucket>` (hash): an order id, a `vads_trans_uuid` (of any transaction) or a
  `vads_trans_id` -> the payment it names, by its index name (`index_name`: the key with its mode's
  initial), whatever the shop or mode (the lookup needs no shop list); another payment the value names is
  under field `<value>\n<8 hex digits of its name's sha1>` (or, if taken, `<value>\n<its name>`), found by
  prefix. The index day (days since 1970-01-01, UTC) is the day the payment was first indexed, kept in its
  record; a payment written more than `REINDEX_AFTER_DAYS` after it is indexed again under the day of
  that write. Redis keeps a hash of under 128 short entries as a compact listpack, and each hash costs
  about 80 bytes of its own, so a day has two sets of buckets (`index_buckets(value)`): `FIRST_BUCKETS`
  hashes, each filled up to `FIRST_FILL` values, which hold a shop's whole day up to about 15,000
  payments, then `INDEX_BUCKETS` for what overflows. A day's hashes expire `REINDEX_AFTER_DAYS` and the
  payment TTL after the day ends: no payment they name outlives them. A payment that expired first is
  skipped on read. The previous release's `cvco:ref:<value>` sets are read until they expire.

Entry fields (short: the history is paid per notification): `k` kind (`x` expiry; none: notification),
`at` received at (microseconds since 1970, UTC), `src`, `st`, `uuid` or `u` (the place of the state's
transaction of that trans_uuid; neither: the first, `FIRST_PLACE`), `tid` (trans_id), `rid` request id,
`did` what the worker did, `ev` the phase of the event published, `o` its outcome (paid, CVCO and
refunded amounts, then flags: its deterministic event_id follows from them) and `sid` its stream id,
added by the script. `read_entry` gives an entry in full.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.job import QueuedNotification
from schemas.notification import key_trans_id
from workers.decide import Decision
from workers.events import outcome_event_id
from workers.payment import PaymentState

HISTORY_CAP = 50
"""Entries kept per payment: a payment's life is a handful of notifications; a storm keeps its latest."""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1)


def notification_entry(queued: QueuedNotification) -> dict[str, Any]:
    """What the history keeps of a received notification, before the worker decided on it."""
    fields = queued.fields
    return {
        "at": _micros(queued.received_at),
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
    return {"k": "x", "at": _micros(now), "src": "SESSION_TIMEOUT", "st": "EXPIRED"}


def entry_json(entry: dict[str, Any], decision: Decision, key: str, state: PaymentState | None) -> str:
    """The entry, on payment `key` at `state`, with what the worker did; a JSON object the script may
    extend with `sid`. What `read_entry` can tell is left out: a published entry's `did`, a trans_id the
    key holds, a trans_uuid of one of the state's transactions (`u`: `L` or `R` and its place, none for
    `FIRST_PLACE`)."""
    done = {**entry, "did": decision.result}
    if done.get("tid") == key_trans_id(key):
        del done["tid"]
    place = _place(state, done.get("uuid")) if state is not None else None
    if place is not None:
        del done["uuid"]
        if place != FIRST_PLACE:
            done["u"] = place
    event = decision.event
    if event is not None:
        del done["did"]
        done["ev"] = event.type.removeprefix("payment.")
        done["o"] = [event.paid_amount, event.cvco_amount, event.refunded_amount, *event.flags]
    return json.dumps(done, separators=(",", ":"), ensure_ascii=False)


FIRST_PLACE = "L0"
"""The place of a payment's first transaction, named by most of its notifications: implied when absent."""


def _places(state: PaymentState) -> dict[str, str]:
    """Each transaction's place: legs and refunds keep their order, a new one joins at the end."""
    return {
        f"{mark}{place}": tx.trans_uuid
        for mark, transactions in (("L", state.legs), ("R", state.refunds))
        for place, tx in enumerate(transactions.values())
        if tx.trans_uuid
    }


def _place(state: PaymentState, uuid: str | None) -> str | None:
    return next((place for place, known in _places(state).items() if known == uuid), None) if uuid else None


def read_entry(state: PaymentState, line: str) -> dict[str, Any]:
    """A stored entry of the payment at `state` in full: `k`, `at` in ISO 8601, `uuid`, `tid`, `did`, `ev`
    the event type and `eid` its event_id (recomputed from the outcome kept); an entry of the previous
    release's reads the same."""
    entry: dict[str, Any] = json.loads(line)
    entry.setdefault("k", "n")
    if entry["k"] == "n":
        entry.setdefault("tid", key_trans_id(state.key))
        if "uuid" not in entry:
            entry["uuid"] = _places(state).get(entry.pop("u", FIRST_PLACE))
    if isinstance(entry.get("at"), int):
        entry["at"] = (_EPOCH + timedelta(microseconds=entry["at"])).isoformat()
    if "o" in entry:
        phase = entry["ev"]
        paid, cvco, refunded, *flags = entry.pop("o")
        entry["ev"] = f"payment.{phase}"
        entry["eid"] = outcome_event_id(state.key, phase, paid, cvco, refunded, flags)
    entry.setdefault("did", "published" if "ev" in entry else None)
    return entry


FIRST_BUCKETS = 512
"""A day's first hashes: with `FIRST_FILL` values each, a day of 15,000 payments (3 values each) in 512 keys."""
FIRST_FILL = 100
"""Values a first hash takes before they go to the overflow hashes: a listpack, even with a few more."""
INDEX_BUCKETS = 8192
"""A day's overflow hashes: under 128 entries each at 200,000 payments a day."""
REINDEX_AFTER_DAYS = 7
"""A payment written this long after its index day is indexed again, so its day's hashes need only live
this much longer than the payment TTL."""


def index_buckets(value: str) -> tuple[str, str]:
    """Which of a day's index hashes may hold `value`: its first one (`f` and three hex digits), and its
    overflow one (four hex digits, the previous release's only one)."""
    digest = hashlib.sha1(value.encode(), usedforsecurity=False).digest()
    overflow, first = int.from_bytes(digest[:2]) % INDEX_BUCKETS, int.from_bytes(digest[2:4]) % FIRST_BUCKETS
    return f"f{first:03x}", f"{overflow:04x}"


_MODE_INITIALS = {"PRODUCTION": "P", "TEST": "T"}
_INITIAL_MODES = {initial: mode for mode, initial in _MODE_INITIALS.items()}


def index_name(key: str) -> str:
    """How the index names payment `key`: its mode by its initial, 9 bytes less in every entry."""
    shop_id, mode, rest = key.split(":", 2)
    return f"{shop_id}:{_MODE_INITIALS[mode]}:{rest}"


def key_of_index_name(name: str) -> str:
    """The payment key an index entry names (the previous layout's entries hold the key itself)."""
    shop_id, mode, rest = name.split(":", 2)
    return f"{shop_id}:{_INITIAL_MODES.get(mode, mode)}:{rest}"


def refs_of(state: PaymentState, entry: dict[str, Any]) -> str:
    """The index values naming this payment, one a line, each after its two buckets and a space each:
    order id, trans_ids, every trans_uuid."""
    values = {state.order_id, state.trans_id.lower(), entry.get("uuid"), (entry.get("tid") or "").lower()}
    for tx in (*state.legs.values(), *state.refunds.values()):
        values.add(tx.trans_uuid)
    named = sorted(value for value in values if value and "\n" not in value)
    return "\n".join(" ".join((*index_buckets(value), value)) for value in named)
