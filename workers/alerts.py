"""Alerts for a human: recorded by the job in one Redis write, mailed later by a cron, folded per window.

A job never talks to SMTP: `record_alert` logs the alert and pushes it on the list `cvco:alerts:outbox`;
the `deliver_alerts` cron mails it. An SMTP outage therefore never slows or fails notification
processing: the mail stays in the outbox and goes out on a later run. A sender killed while mailing
loses nothing either: the alert it holds waits in `cvco:alerts:sending` for the next sender.

At most one mail per alert kind and shop per `settings.alert_window_s`: the first alert of a window is
mailed and opens the window (`cvco:alerts:window:<kind>:<shop>`, expiring); the next ones are counted in
`cvco:alerts:folded` (and the latest kept in `cvco:alerts:folded:last`). When the window has passed, the
count goes out in one summary mail with the latest folded alert, so nothing is silently swallowed.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime
from typing import Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis

from core.keys import (
    ALERT_FOLDED,
    ALERT_FOLDED_LAST,
    ALERT_OUTBOX,
    ALERT_SENDER_LEASE,
    ALERT_SENDING,
    ALERT_WINDOW_PREFIX,
    ALERTS_SENT,
)
from schemas.literal import literal
from schemas.settings import Settings
from workers.mailer import MAIL_ERRORS, mail_enabled, send_mail
from workers.metrics import WorkerMetrics

OUTBOX_MAX = 10_000
SENDER_LEASE_S = 60.0
ALL_SHOPS = "*"

AlertKind = Literal[
    "job_parked", "failed_dropped", "signature_burst", "cascade_partial", "late_acceptance", "queue_stale"
]
PaymentAlertKind = Literal["seed_rule_broken", "expired_authorised", "refund_unattached"]

TITLES: dict[str, str] = {
    "job_parked": "notification mise de côté (échec de traitement)",
    "failed_dropped": "file des échecs pleine : anciennes entrées supprimées",
    "signature_burst": "rafale de signatures invalides",
    "cascade_partial": "paiement en cascade resté partiel",
    "late_acceptance": "paiement accepté après expiration de la session",
    "queue_stale": "notifications en attente depuis trop longtemps (workers arrêtés ?)",
    "seed_rule_broken": "opération Chèque-Vacances Connect hors des règles du guide (gardée, signalée)",
    "expired_authorised": "session expirée avec une part autorisée (elle sera remise en banque)",
    "refund_unattached": "remboursement sans paiement connu",
}

SUMMARY_FIELDS = {
    "boutique": "vads_site_id",
    "commande": "vads_order_id",
    "trans_id": "vads_trans_id",
    "trans_uuid": "vads_trans_uuid",
    "montant (centimes)": "vads_amount",
    "statut": "vads_trans_status",
}
"""The only notification fields an alert repeats: never a key, a signature or a hash."""

log = structlog.get_logger(__name__)


class Alert(BaseModel):
    """One alert: what happened, the consequence, what to do (exact commands) and the notification summary."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: AlertKind | PaymentAlertKind
    shop_id: str = ALL_SHOPS
    happened: str
    consequence: str
    actions: tuple[str, ...]
    summary: dict[str, str] = Field(default_factory=dict)
    raised_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def group(self) -> str:
        return f"{self.kind}:{self.shop_id}"


def notification_summary(fields: dict[str, str]) -> dict[str, str]:
    """Shop, order, trans_id, trans_uuid, amount and status of a notification, as the mails show them."""
    return {label: fields[name] for label, name in SUMMARY_FIELDS.items() if fields.get(name)}


def subject(alert: Alert, folded: int = 0) -> str:
    # the shop id may come from an unsigned body (a signature burst): a CR or LF would forge a header
    where = "toutes boutiques" if alert.shop_id == ALL_SHOPS else f"boutique {literal(alert.shop_id)}"
    more = f" ({folded} regroupée{'s' if folded > 1 else ''})" if folded else ""
    return f"[cvco-ipn] {TITLES[alert.kind]} - {where}{more}"


def render(alert: Alert, folded: int = 0, window_s: int = 0) -> str:
    """The plain-text mail body, in French; commands are given as-is.

    Every text of the alert may quote the platform's (an order id, an error message): each is shown
    `literal`, so a line break in it never forges a line or a section of the mail.
    """
    happened, consequence = literal(alert.happened), literal(alert.consequence)
    lines = ["Ce qui s'est passé :", f"  {happened}", "", "Conséquence :", f"  {consequence}", ""]
    lines += ["Que faire :", *(f"  {literal(action)}" for action in alert.actions), ""]
    if alert.summary:
        summary = (f"  {literal(label)} : {literal(value)}" for label, value in alert.summary.items())
        lines += ["Notification :", *summary, ""]
    if folded:
        plural = "s" if folded > 1 else ""
        lines += [
            f"{folded} alerte{plural} de ce type regroupée{plural} depuis le message précédent (au plus "
            f"un message par type et par boutique toutes les {window_s} s) ; la plus récente est décrite "
            "ci-dessus.",
            "",
        ]
    lines.append(f"Alerte levée le {alert.raised_at:%Y-%m-%d %H:%M:%S} UTC par cvco-ipn.")
    return "\n".join(lines) + "\n"


async def record_alert(redis: Redis, settings: Settings, alert: Alert) -> None:
    """Log the alert and, when mail is configured, queue it for the sender: one Redis write, no SMTP."""
    log.warning("alert", kind=alert.kind, shop_id=alert.shop_id, happened=alert.happened)
    if not mail_enabled(settings):
        return
    async with redis.pipeline(transaction=True) as pipe:
        pipe.lpush(ALERT_OUTBOX, alert.model_dump_json())
        pipe.ltrim(
            ALERT_OUTBOX, 0, OUTBOX_MAX - 1
        )  # the oldest unsent alerts go first when SMTP is down for days
        await pipe.execute()


# KEYS: the folded counts, the latest folded alerts. ARGV: the group, the count just mailed. Alerts folded
# in while the mail went out stay counted (and their latest kept) for the next summary.
_SETTLE_FOLDED = """
local left = redis.call('HINCRBY', KEYS[1], ARGV[1], -tonumber(ARGV[2]))
if left <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
end
return left
"""
# KEYS: the sender lease. ARGV: this sender's token. Released only by the sender that holds it.
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


async def _peek_folded(redis: Redis, group: str) -> tuple[int, str | None]:
    """How many alerts of this group were folded since its last mail, and the latest of them."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hget(ALERT_FOLDED, group)
        pipe.hget(ALERT_FOLDED_LAST, group)
        count, last = await pipe.execute()
    return int(count or 0), last.decode() if last else None


async def _settle_folded(redis: Redis, group: str, mailed: int) -> None:
    """The `mailed` folded alerts went out: forget them (only those: later folds wait for the next mail)."""
    if mailed:
        await redis.eval(_SETTLE_FOLDED, 2, ALERT_FOLDED, ALERT_FOLDED_LAST, group, str(mailed))  # type: ignore[misc]  # async client


async def _open_window(redis: Redis, settings: Settings, group: str) -> bool:
    return bool(await redis.set(ALERT_WINDOW_PREFIX + group, "1", nx=True, ex=settings.alert_window_s))


ALERTS_SENT_KEPT = 20


async def _remember_sent(redis: Redis, alert: Alert) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.lpush(ALERTS_SENT, alert.model_dump_json())
        pipe.ltrim(ALERTS_SENT, 0, ALERTS_SENT_KEPT - 1)
        await pipe.execute()


async def recent_alerts(redis: Redis) -> list[Alert]:
    """The latest alert mails sent, newest first."""
    return [Alert.model_validate_json(raw) for raw in await redis.lrange(ALERTS_SENT, 0, -1)]  # type: ignore[misc]  # async client


async def _mail(
    redis: Redis, settings: Settings, alert: Alert, folded: int, metrics: WorkerMetrics | None
) -> bool:
    try:
        await send_mail(settings, subject(alert, folded), render(alert, folded, settings.alert_window_s))
    except MAIL_ERRORS as e:
        log.warning(
            "alert_not_sent", kind=alert.kind, shop_id=alert.shop_id, reason=f"{type(e).__name__}: {e}"
        )
        if metrics is not None:
            metrics.count_alert(sent=False)
        return False
    log.info("alert_sent", kind=alert.kind, shop_id=alert.shop_id, folded=folded)
    await _remember_sent(redis, alert)
    if metrics is not None:
        metrics.count_alert(sent=True)
    return True


async def _flush_folded(redis: Redis, settings: Settings, metrics: WorkerMetrics | None) -> tuple[int, bool]:
    """Summary mails for windows that closed with folded alerts; (mails sent, SMTP still answering)."""
    sent = 0
    for raw_group in await redis.hkeys(ALERT_FOLDED):  # type: ignore[misc]  # async client
        group = raw_group.decode()
        if not await _open_window(redis, settings, group):
            continue
        folded, last = await _peek_folded(redis, group)
        if not folded or last is None:
            continue
        try:
            mailed = await _mail(redis, settings, Alert.model_validate_json(last), folded, metrics)
        except asyncio.CancelledError:
            await asyncio.shield(redis.delete(ALERT_WINDOW_PREFIX + group))
            raise
        if not mailed:
            await redis.delete(ALERT_WINDOW_PREFIX + group)  # the summary is tried again at the next run
            return sent, False
        await _settle_folded(redis, group, folded)
        sent += 1
    return sent, True


async def _put_back(redis: Redis, group: str, raw: str) -> None:
    """An alert not mailed: back at the outbox's sending end (first out next time), its window closed."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(ALERT_WINDOW_PREFIX + group)
        pipe.lrem(ALERT_SENDING, 1, raw)
        pipe.rpush(ALERT_OUTBOX, raw)
        await pipe.execute()


async def deliver_alerts(
    redis: Redis,
    settings: Settings,
    *,
    limit: int = 200,
    budget_s: float | None = None,
    lease_s: float = SENDER_LEASE_S,
    metrics: WorkerMetrics | None = None,
) -> int:
    """Mail queued alerts, folding those of an open window; returns the mails sent (and counts them, sent
    and failed, in the worker's `metrics`).

    Stops at the first SMTP failure, or once `budget_s` has passed (the cron's timeout must not cut a send:
    a cancelled send puts its alert back first). One sender at a time holds the lease `cvco:alerts:sender`
    (for `lease_s` at most; another sender meanwhile sends nothing). The alert being mailed waits in
    `cvco:alerts:sending`, and folded counts are forgotten only once their summary is mailed: a sender
    killed mid-send loses nothing, since the next one (after the dead one's lease) puts its alert back
    first. Such an alert may then be mailed twice; never lost.
    """
    if not mail_enabled(settings):
        await redis.delete(ALERT_OUTBOX, ALERT_SENDING)
        return 0
    token = secrets.token_hex(8)
    if not await redis.set(ALERT_SENDER_LEASE, token, nx=True, px=int(lease_s * 1000)):
        return 0
    try:
        return await _deliver(redis, settings, limit, budget_s, metrics)
    finally:
        await redis.eval(_RELEASE, 1, ALERT_SENDER_LEASE, token)  # type: ignore[misc]  # async client


async def _deliver(
    redis: Redis, settings: Settings, limit: int, budget_s: float | None, metrics: WorkerMetrics | None
) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (budget_s if budget_s is not None else float("inf"))
    # what a sender that died mid-send left: back at the sending end of the outbox
    while await redis.lmove(ALERT_SENDING, ALERT_OUTBOX, "RIGHT", "RIGHT") is not None:
        log.warning("alert_recovered", reason="its sender stopped before mailing it")
    sent, smtp_up = await _flush_folded(redis, settings, metrics)
    for _ in range(limit if smtp_up else 0):
        if loop.time() > deadline:
            break
        taken = await redis.lmove(ALERT_OUTBOX, ALERT_SENDING, "RIGHT", "LEFT")
        if taken is None:
            break
        raw: str = taken.decode("utf-8")
        alert = Alert.model_validate_json(raw)
        if not await _open_window(redis, settings, alert.group):
            async with redis.pipeline(transaction=True) as pipe:
                pipe.hincrby(ALERT_FOLDED, alert.group, 1)
                pipe.hset(ALERT_FOLDED_LAST, alert.group, raw)
                pipe.lrem(ALERT_SENDING, 1, raw)
                await pipe.execute()
            continue
        folded, _ = await _peek_folded(redis, alert.group)
        try:
            mailed = await _mail(redis, settings, alert, folded, metrics)
        except asyncio.CancelledError:
            await asyncio.shield(_put_back(redis, alert.group, raw))
            raise
        if not mailed:
            await _put_back(redis, alert.group, raw)
            break
        await _settle_folded(redis, alert.group, folded)
        await redis.lrem(ALERT_SENDING, 1, raw)  # type: ignore[misc]  # async client
        sent += 1
    return sent
