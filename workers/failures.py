"""Retry or park: what happens to a notification job that fails, by error class.

arq re-queues a job only when it raises `arq.worker.Retry`; any other exception ends it and its result
key expires, so a notification the platform will never resend would be lost. The wrapper decides instead:

- transient errors (`TRANSIENT_ERRORS`: Redis, network, timeouts) are retried with exponential backoff
  and jitter while `job_try < settings.max_tries`, then parked;
- permanent errors (`PermanentError`, a payload failing validation) are parked at once;
- anything else is a bug: parked at once with its traceback, never lost;
- a job whose tries all died with their worker (killed mid-job) is parked once past max_tries, where
  arq would otherwise drop it after its own limit with nothing but an expiring result key.

A parked job completes normally (arq does not retry it) and raises a `job_parked` alert. A replayed job
(`replay:<failed id>:<n>`) that succeeds removes its entry from the failed-job store.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from arq.worker import Function, Retry, func
from pydantic import ValidationError

from schemas.errors import TRANSIENT_ERRORS, PermanentError
from schemas.job import PROCESS_NOTIFICATION
from schemas.settings import Settings
from workers import discarded_store, failed_store
from workers.alerts import ALL_SHOPS, Alert, notification_summary, record_alert
from workers.apply import record_parked
from workers.context import WorkerContext, arq_function

BACKOFF_BASE_S = 2.0
BACKOFF_CAP_S = 300.0
PARK_MARGIN_S = 5
"""arq's own job timeout is this much longer than the handler's, leaving time to park a timed-out job."""
ARQ_EXTRA_TRIES = 10
"""arq ends a job past its max_tries without calling it; the slack lets the wrapper park it instead
(a worker killed mid-job makes arq count a try the wrapper never saw end)."""


class WorkerDied(PermanentError):
    """A job whose tries keep killing their worker (a poison notification): parked, not tried again."""


JobHandler = Callable[[WorkerContext, Any], Awaitable[Any]]
OutcomeHook = Callable[[WorkerContext, Any, Any], Awaitable[None]]

log = structlog.get_logger(__name__)


def backoff_s(job_try: int, base_s: float = BACKOFF_BASE_S, cap_s: float = BACKOFF_CAP_S) -> float:
    """Delay before try `job_try + 1`: doubling from `base_s`, capped, half of it random (equal jitter)."""
    ceiling = min(cap_s, base_s * 2.0 ** max(job_try - 1, 0))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def is_permanent(error: BaseException) -> bool:
    """Retrying cannot help: bad content, unknown shop, a payload that fails validation."""
    return isinstance(error, PermanentError | ValidationError)


UNREPLAYABLE_ERRORS = frozenset({"InvalidNotification", "ValidationError", "MalformedCascade"})
"""Errors in the notification itself: the same bytes fail the same way however often they are replayed."""


def parked_alert(entry: failed_store.FailedJob) -> Alert:
    if entry.error_class in UNREPLAYABLE_ERRORS:
        actions: tuple[str, ...] = (
            f"Voir l'erreur complète : cvco-ipn failed show {entry.id}",
            "Rejouer ne servira à rien : la notification elle-même est illisible. Vérifier le paiement dans "
            "le back-office de la plateforme, puis clore l'entrée : "
            f'cvco-ipn failed discard {entry.id} --reason "..."',
            "Liste de tous les échecs : cvco-ipn failed list",
        )
    else:
        actions = (
            f"Voir l'erreur complète : cvco-ipn failed show {entry.id}",
            f"Corriger la cause (clé de boutique, configuration...), puis rejouer : cvco-ipn replay {entry.id}",
            f'Si elle ne doit jamais être traitée : cvco-ipn failed discard {entry.id} --reason "..."',
            "Liste de tous les échecs : cvco-ipn failed list",
        )
    return Alert(
        kind="job_parked",
        shop_id=entry.shop_id or ALL_SHOPS,
        happened=(
            f"La notification {entry.id} n'a pas pu être traitée après {entry.tries} tentative(s) : "
            f"{entry.error_class}: {entry.error_message}"
        ),
        consequence=(
            "Elle est mise de côté dans la file des échecs : l'état du paiement n'est pas à jour et aucun "
            "événement n'a été publié pour elle. La plateforme ne la renverra pas."
        ),
        actions=actions,
        summary=notification_summary(entry.fields()),
    )


def dropped_alert(dropped: list[str], failed_max: int) -> Alert:
    shown = ", ".join(dropped[:5]) + (" ..." if len(dropped) > 5 else "")
    return Alert(
        kind="failed_dropped",
        happened=f"La file des échecs a atteint une de ses limites ({failed_max} entrées, CVCO_FAILED_MAX_BYTES "
        f"octets, ou trop de copies d'un même paiement ou d'une même signature) : {len(dropped)} plus "
        f"ancienne(s) supprimée(s) ({shown}).",
        consequence="Ces notifications ne peuvent plus être rejouées ; leur paiement reste à vérifier à la main.",
        actions=(
            "Traiter les échecs en attente : cvco-ipn failed list, puis cvco-ipn replay --all",
            "Augmenter CVCO_FAILED_MAX ou CVCO_FAILED_MAX_BYTES si le volume est normal.",
        ),
    )


async def park_job(
    ctx: WorkerContext, settings: Settings, payload: Any, error: BaseException, failed_id: str
) -> None:
    """Keep the job in the failed-job store and alert; if Redis is down, arq retries the job later."""
    redis = ctx["redis"]
    job_try = int(ctx["job_try"])
    try:
        if await discarded_store.is_discarded(redis, failed_id):
            # an operator closed this notification for good: its audit record stays, no new entry, no mail
            log.warning("discarded_job_failed_again", failed_id=failed_id, error=type(error).__name__)
            return
        dropped = await failed_store.park(
            redis,
            failed_id=failed_id,
            job_id=str(ctx["job_id"]),
            payload=payload,
            error=error,
            traceback="".join(traceback.format_exception(error)),
            tries=job_try,
            failed_max=settings.failed_max,
            failed_max_bytes=settings.failed_max_bytes,
        )
        entry = await failed_store.get(redis, failed_id)
    except TRANSIENT_ERRORS as e:
        log.error("park_failed", failed_id=failed_id, reason=f"{type(e).__name__}: {e}")
        raise Retry(defer=backoff_s(job_try)) from e
    log.error(
        "job_parked", failed_id=failed_id, error=type(error).__name__, message=str(error), tries=job_try
    )
    try:
        await record_parked(redis, payload, error)
        if entry is not None:
            await record_alert(redis, settings, parked_alert(entry))
        if dropped:
            log.error("failed_jobs_dropped", count=len(dropped), failed_ids=dropped[:20])
            await record_alert(redis, settings, dropped_alert(dropped, settings.failed_max))
    except TRANSIENT_ERRORS as e:  # the entry is parked; `failed list` shows it even if this is lost
        log.error("alert_not_recorded", failed_id=failed_id, reason=f"{type(e).__name__}: {e}")


def with_failure_policy(
    handler: JobHandler,
    *,
    on_outcome: OutcomeHook | None = None,
    backoff_base_s: float = BACKOFF_BASE_S,
) -> JobHandler:
    """Wrap an arq job `handler(ctx, payload)`; ctx must hold `redis`, `settings`, `job_id`, `job_try`.

    `on_outcome(ctx, payload, result)` runs after a success (alerts on the outcome); its own failure is
    logged, never turned into a retry: the notification was applied already.
    """

    @functools.wraps(handler)
    async def run(ctx: WorkerContext, payload: Any) -> Any:
        settings: Settings = ctx["settings"]
        metrics = ctx["metrics"]  # the handler counts what it did; this wrapper, retries and parked jobs
        started = time.perf_counter()
        job_try = int(ctx["job_try"])
        failed_id = failed_store.failed_id_for_job(str(ctx["job_id"]))
        if job_try > settings.max_tries:
            # every earlier try ended without reaching this wrapper's verdict: its worker died mid-job
            died = WorkerDied(f"{job_try - 1} tries ended with no result: the worker died each time")
            await park_job(ctx, settings, payload, died, failed_id)
            metrics.count_job("parked", time.perf_counter() - started)
            return None
        try:
            async with asyncio.timeout(settings.job_timeout_s):
                result = await handler(ctx, payload)
        except Retry:
            if job_try < settings.max_tries:
                metrics.count_job("retried", time.perf_counter() - started)
                raise
            await park_job(ctx, settings, payload, RuntimeError("retried until max_tries"), failed_id)
            metrics.count_job("parked", time.perf_counter() - started)
            return None
        except Exception as e:
            if not is_permanent(e) and isinstance(e, TRANSIENT_ERRORS) and job_try < settings.max_tries:
                defer = backoff_s(job_try, backoff_base_s)
                log.warning(
                    "job_retry", error=type(e).__name__, message=str(e), job_try=job_try, defer_s=defer
                )
                metrics.count_job("retried", time.perf_counter() - started)
                raise Retry(defer=defer) from e
            await park_job(ctx, settings, payload, e, failed_id)
            metrics.count_job("parked", time.perf_counter() - started)
            return None
        if failed_id != ctx["job_id"]:
            await failed_store.resolve(ctx["redis"], failed_id)
            log.info("replay_succeeded", failed_id=failed_id)
        if on_outcome is not None:
            try:
                await on_outcome(ctx, payload, result)
            except Exception:  # the notification is applied; a lost alert must not re-run it
                log.exception("outcome_hook_failed", failed_id=failed_id)
        return result

    return run


def notification_function(
    handler: JobHandler, settings: Settings, on_outcome: OutcomeHook | None = None
) -> Function:
    """The arq registration of `process_notification` wrapped in the retry-or-park policy."""
    return func(
        arq_function(with_failure_policy(handler, on_outcome=on_outcome)),
        name=PROCESS_NOTIFICATION,
        timeout=settings.job_timeout_s + PARK_MARGIN_S,
        max_tries=settings.max_tries + ARQ_EXTRA_TRIES,
    )
