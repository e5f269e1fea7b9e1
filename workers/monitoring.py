"""What the workers watch on a human's behalf, and the cron jobs that do it.

- after each published notification: a cascade left `partial`, or a payment accepted after cvco-ipn
  declared its session expired (read from the payment state, one alert per payment and kind);
- every run of the checks: a burst of signature failures per shop (the receiver's forensics stream) and
  the oldest queued job older than `settings.queue_age_alert_s` (workers down or too few).

`scheduled_jobs(settings)` lists every cron: expiry sweep, alert sender, checks, retention sweep.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import structlog
from arq.cron import CronJob, cron
from redis.asyncio import Redis

from core.keys import FORENSICS_STREAM
from schemas.settings import Settings
from workers.alerts import ALL_SHOPS, Alert, deliver_alerts, notification_summary, record_alert
from workers.apply import load_payment
from workers.context import WorkerContext, arq_function
from workers.expiry import sweep_expired_sessions
from workers.failures import PARK_MARGIN_S
from workers.flag_alerts import FLAG_ALERTS, alert_flags, first_time
from workers.payment import ACCEPTED_AFTER_EXPIRY, CASCADE_PARTIAL
from workers.retention import RETENTION_SECOND, retention_cron

SWEEP_EVERY_S = 10
CHECK_EVERY_S = 30
BURST_SCAN_MAX = 10_000

log = structlog.get_logger(__name__)


async def alert_on_outcome(ctx: WorkerContext, payload: Any, result: Any) -> None:
    """After a published notification: alert on a partial cascade or an acceptance after a detected expiry.

    `result` is what `process_notification` returned; most jobs carry no flag and cost nothing here.
    """
    flags = set(result.get("flags", ())) if isinstance(result, dict) else set()
    if not flags & {CASCADE_PARTIAL, ACCEPTED_AFTER_EXPIRY, *FLAG_ALERTS}:
        return
    redis: Redis = ctx["redis"]
    key = str(result["payment_key"])
    state = await load_payment(redis, key)  # the amounts and phase the mail reports
    if state is None:
        return
    summary = notification_summary(payload["fields"])
    if ACCEPTED_AFTER_EXPIRY in flags and await first_time(redis, "late_acceptance", key):
        await record_alert(
            redis, ctx["settings"], _late_acceptance(state.shop_id, key, str(state.phase), summary)
        )
    if CASCADE_PARTIAL in flags and await first_time(redis, "cascade_partial", key):
        await record_alert(redis, ctx["settings"], _partial(state.shop_id, key, state, summary))
    await alert_flags(redis, ctx["settings"], state, flags, summary)


def _late_acceptance(shop_id: str, key: str, phase: str, summary: dict[str, str]) -> Alert:
    return Alert(
        kind="late_acceptance",
        shop_id=shop_id,
        happened=(
            f"Le paiement {key} a été déclaré expiré par cvco-ipn (session sans nouvelle), puis la plateforme "
            f"a notifié son acceptation : il est maintenant « {phase} »."
        ),
        consequence=(
            "Un événement payment.expired puis un événement payment.accepted (ou partial/captured) ont été "
            "publiés : la commande a pu être annulée alors que l'acheteur a payé."
        ),
        actions=(
            "Vérifier la commande dans le back-office du marchand et la rétablir si elle a été annulée.",
            "Si cela se répète, augmenter CVCO_SESSION_GRACE_S.",
        ),
        summary=summary,
    )


def _partial(shop_id: str, key: str, state: Any, summary: dict[str, str]) -> Alert:
    return Alert(
        kind="cascade_partial",
        shop_id=shop_id,
        happened=(
            f"Le paiement en cascade {key} est resté partiel : {state.cvco_amount} centimes payés en "
            f"Chèques-Vacances Connect, {state.paid_amount} centimes payés sur {state.amount} au total ; le "
            "complément a échoué."
        ),
        consequence="La commande n'est pas entièrement payée : un événement payment.partial a été publié.",
        actions=(
            "Contacter l'acheteur pour le complément, ou rembourser la part payée depuis le back-office.",
            "Suivre les événements du paiement : cvco-ipn events",
        ),
        summary=summary,
    )


async def check_signature_bursts(
    redis: Redis, settings: Settings, *, now: float | None = None
) -> dict[str, int]:
    """Signature failures per shop in the last window; alert for each shop at or above the threshold."""
    since_ms = int(((time.time() if now is None else now) - settings.sigfail_alert_window_s) * 1000)
    entries = await redis.xrange(FORENSICS_STREAM, min=f"{since_ms}-0", max="+", count=BURST_SCAN_MAX)
    counts = Counter(fields.get(b"shop_id", b"?").decode() for _, fields in entries)
    bursts = {shop: n for shop, n in counts.items() if n >= settings.sigfail_alert_threshold}
    for shop, n in bursts.items():
        alert = Alert(
            kind="signature_burst",
            shop_id=shop,
            happened=f"{n} notifications à la signature invalide pour la boutique {shop} en {settings.sigfail_alert_window_s} s.",
            consequence=(
                "Elles ont été refusées (401) et rien n'a été traité : soit la clé configurée ne correspond plus "
                "(rotation de clé, mode TEST/PRODUCTION), soit quelqu'un envoie de fausses notifications."
            ),
            actions=(
                "Voir les dernières : cvco-ipn rejected list --reason signature --since 1h",
                "Comparer la clé du back-office avec CVCO_SHOPS, puis redémarrer cvco-ipn serve et cvco-ipn worker.",
            ),
        )
        await record_alert(redis, settings, alert)
    return bursts


async def check_queue_age(redis: Redis, settings: Settings, *, now: float | None = None) -> float | None:
    """Age in seconds of the oldest queued job (its score is the enqueue time in ms); alert past the limit."""
    oldest = await redis.zrange(settings.queue_name, 0, 0, withscores=True)
    if not oldest:
        return None
    age_s = (time.time() if now is None else now) - float(oldest[0][1]) / 1000
    if age_s > settings.queue_age_alert_s:
        depth = int(await redis.zcard(settings.queue_name))
        alert = Alert(
            kind="queue_stale",
            shop_id=ALL_SHOPS,
            happened=f"La plus ancienne des {depth} notifications en file attend depuis {int(age_s)} s.",
            consequence=(
                "Les paiements ne sont pas mis à jour : les workers sont arrêtés, bloqués ou trop peu nombreux."
            ),
            actions=(
                "Vérifier que des workers tournent (cvco-ipn worker) et lire leurs journaux.",
                "Vider la file à la main si besoin : cvco-ipn worker --burst",
            ),
        )
        await record_alert(redis, settings, alert)
    return age_s


async def _sweep(ctx: WorkerContext) -> int:
    published = await sweep_expired_sessions(ctx["redis"], ctx["settings"])
    if published:
        ctx["metrics"].events.labels("payment.expired").inc(published)
    return published


async def _deliver(ctx: WorkerContext) -> int:
    settings: Settings = ctx["settings"]
    # the lease outlasts the run: arq cancels the cron at its timeout, and the lease is released then
    return await deliver_alerts(
        ctx["redis"],
        settings,
        budget_s=settings.job_timeout_s / 2,
        lease_s=settings.job_timeout_s + PARK_MARGIN_S + 1,
        metrics=ctx["metrics"],
    )


async def _checks(ctx: WorkerContext) -> None:
    await check_signature_bursts(ctx["redis"], ctx["settings"])
    await check_queue_age(ctx["redis"], ctx["settings"])


def scheduled_jobs(settings: Settings, *, sweep_every_s: int = SWEEP_EVERY_S) -> list[CronJob]:
    """The crons of the failure handling; arq runs each tick on one worker only (`unique`).

    Their timeout is the notification job's: arq holds a killed worker's jobs for the longest function
    timeout (+10 s) before another worker may take them, so a longer cron would delay that recovery.
    """
    every = set(range(0, 60, sweep_every_s))
    checks = set(range(0, 60, CHECK_EVERY_S))
    timeout = settings.job_timeout_s + PARK_MARGIN_S
    return [
        cron(
            arq_function(_sweep),
            name="cvco_session_expiry",
            second=every,
            run_at_startup=True,
            timeout=timeout,
        ),
        cron(arq_function(_deliver), name="cvco_alert_sender", second=every, timeout=timeout),
        cron(arq_function(_checks), name="cvco_checks", second=checks, timeout=timeout),
        cron(arq_function(retention_cron), name="cvco_retention", second=RETENTION_SECOND, timeout=timeout),
    ]
