"""Every Redis key name of cvco-ipn (arq's own keys aside), for whichever process writes or reads it."""

from __future__ import annotations

SESSIONS_KEY = "cvco:sessions"
"""Sorted set of watched payment sessions: member = payment key, score = deadline (epoch seconds)."""
SESSION_RECORD_PREFIX = "cvco:session:"
"""+ payment key (string): the watched session's `PendingPayment` as JSON."""

PAYMENT_PREFIX = "cvco:payment:"
"""+ payment key (string, `workers.record`): the payment's version, state and history, written by the
workers' compare-and-set."""

FORENSICS_STREAM = "cvco:forensics:signature"
"""Stream of signature mismatches (no body), written by the receiver, counted by the workers' checks."""
REJECTED_PREFIX = "cvco:rejected:"
"""+ request id (hash): a refused `POST /ipn` kept for `cvco-ipn rejected`, written by the receiver."""
REJECTED_INDEX_PREFIX = "cvco:rejected:index:"
"""+ reason (sorted set): the kept refusals of that reason, id -> receipt time in ms."""

FAILED_PREFIX = "cvco:failed:"
"""+ failed id (hash): a parked job, written by the workers, listed and replayed by `cvco-ipn failed`."""
FAILED_INDEX = "cvco:failed:index"
"""Sorted set of parked jobs (id -> last failure time), also counted by the receiver's `/metrics`."""
DISCARDED_PREFIX = "cvco:discarded:"
"""+ failed id (hash): the audit record of a parked job an operator discarded (`cvco-ipn failed discard`)."""
DISCARDED_INDEX = "cvco:discarded:index"
"""Sorted set of discarded jobs (id -> discard time)."""

HISTORY_PREFIX = "cvco:history:"
"""+ payment key (list): the previous release's history of a payment, moved into its record by its next
write."""
REF_PREFIX = "cvco:ref:"
"""+ order id, trans_id or trans_uuid (set): the payment keys it names; the previous release's index, read
until it expires."""
REFS_PREFIX = "cvco:refs:"
"""+ index day and bucket (hash): order id, trans_id or trans_uuid -> a payment key it names
(`workers.history`), for `cvco-ipn payment show` and for the refund of an order."""

TRANS_ID_COUNTER_PREFIX = "cvco:trans_id:"
"""+ shop and UTC day: the form builder's transaction-id counter."""
TRANS_ID_PERMUTATION_KEY = "cvco:trans_id:secret"
"""The secret keying the transaction-id permutation, drawn once per deployment (no expiry)."""

ALERTED_PREFIX = "cvco:alerted:"
"""+ kind and payment key: set once a payment's alert of that kind was raised."""
ALERT_OUTBOX = "cvco:alerts:outbox"
ALERT_SENDING = "cvco:alerts:sending"
ALERT_SENDER_LEASE = "cvco:alerts:sender"
ALERT_WINDOW_PREFIX = "cvco:alerts:window:"
ALERT_FOLDED = "cvco:alerts:folded"
ALERT_FOLDED_LAST = "cvco:alerts:folded:last"
ALERTS_SENT = "cvco:alerts:sent"
"""The latest alert mails sent (a capped list), for the console's overview."""
DAILY_PREFIX = "cvco:daily:"
"""`cvco:daily:<days since 1970-01-01, UTC>` (hash): the events published that day, by type (`<type>`: how
many, `<type>:paid`: their paid amounts, cents), kept `DAILY_KEPT_S`; written with the event."""
DAILY_KEPT_S = 8 * 86400
