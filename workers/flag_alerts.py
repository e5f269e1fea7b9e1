"""Alerts on a payment's flags: seed rules broken (kept, not dropped), an expiry with money authorised, a
refund with no payment. Raised once per payment and flag, by the notification job or the expiry sweep.
"""

from __future__ import annotations

from collections.abc import Iterable

from redis.asyncio import Redis

from schemas.settings import Settings
from workers.alerts import Alert, record_alert
from workers.payment import (
    EXPIRED_AUTHORISED,
    NON_EUR_CVCO,
    PARTIAL_CANCEL,
    PARTIAL_REFUND,
    REFUND_UNATTACHED,
    PaymentState,
)

ONCE_PER_PAYMENT_S = 7 * 86400
ONCE_PREFIX = "cvco:alerted:"


async def first_time(redis: Redis, kind: str, key: str) -> bool:
    """True the first time this kind of alert is raised for this payment (within a week)."""
    return bool(await redis.set(f"{ONCE_PREFIX}{kind}:{key}", "1", nx=True, ex=ONCE_PER_PAYMENT_S))


_SEED_RULE = (
    "La plateforme a notifié ce que le guide Chèque-Vacances Connect n'autorise pas : {what} ({key})."
)
_SEED_CONSEQUENCE = (
    "L'événement a été publié avec le drapeau « {flag} » : la commande peut ne pas suivre le paiement."
)
_SEED_ACTION = "Vérifier la transaction dans le back-office du marchand et corriger la commande à la main."
FLAG_ALERTS: dict[str, tuple[str, str, str, str]] = {
    PARTIAL_REFUND: (
        "seed_rule_broken",
        _SEED_RULE.replace("{what}", "un remboursement partiel"),
        _SEED_CONSEQUENCE,
        _SEED_ACTION,
    ),
    PARTIAL_CANCEL: (
        "seed_rule_broken",
        _SEED_RULE.replace("{what}", "une annulation partielle"),
        _SEED_CONSEQUENCE,
        _SEED_ACTION,
    ),
    NON_EUR_CVCO: (
        "seed_rule_broken",
        _SEED_RULE.replace("{what}", "une devise autre que l'euro"),
        _SEED_CONSEQUENCE,
        _SEED_ACTION,
    ),
    EXPIRED_AUTHORISED: (
        "expired_authorised",
        "La session du paiement {key} a expiré alors qu'une part ({paid} centimes) était autorisée.",
        "payment.expired a été publié (drapeau « {flag} ») mais la part autorisée sera remise en banque "
        "automatiquement (guide §11.1) : l'acheteur sera débité.",
        "Rembourser la part autorisée depuis le back-office, ou rétablir la commande.",
    ),
    REFUND_UNATTACHED: (
        "refund_unattached",
        "Un remboursement de {refunded} centimes ({key}) ne se rattache à aucun paiement connu.",
        "payment.refunded a été publié seul (drapeau « {flag} », paid_amount 0) : la commande n'est pas liée.",
        "Retrouver le paiement remboursé dans le back-office et mettre la commande à jour à la main.",
    ),
}
"""Per flag: the alert kind, what happened, the consequence and what to do ({key}, {paid}, ... filled in)."""


async def alert_flags(
    redis: Redis, settings: Settings, state: PaymentState, flags: Iterable[str], summary: dict[str, str]
) -> None:
    """Record one alert per flag of `FLAG_ALERTS` this payment carries, the first time only."""
    for flag in sorted(set(flags) & set(FLAG_ALERTS)):
        if await first_time(redis, flag, state.key):
            await record_alert(redis, settings, _flag_alert(flag, state, summary))


def _flag_alert(flag: str, state: PaymentState, summary: dict[str, str]) -> Alert:
    kind, happened, consequence, action = FLAG_ALERTS[flag]
    values = {"key": state.key, "flag": flag, "paid": state.paid_amount, "refunded": state.refunded_amount}
    return Alert(
        kind=kind,  # type: ignore[arg-type]  # the table holds only PaymentAlertKind values
        shop_id=state.shop_id,
        happened=happened.format(**values),
        consequence=consequence.format(**values),
        actions=(action, "Suivre les événements du paiement : cvco-ipn events tail"),
        summary=summary,
    )
