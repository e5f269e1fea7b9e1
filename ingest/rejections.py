"""A request the receiver refuses: raised by handlers, turned into a one-line HTTP answer by the middleware."""

from __future__ import annotations

from typing import Literal

from ingest.metrics import Outcome

KeptReason = Literal["signature", "shop", "mode", "not_notification"]
"""Why a refused `POST /ipn` is kept in the rejected store (`cvco-ipn rejected list --reason`)."""
KEPT_REASONS: tuple[KeptReason, ...] = ("signature", "shop", "mode", "not_notification")


class Rejected(Exception):
    """Refuse the request with `status` and a one-line `reason`, counted under `outcome`.

    `kept` names why the raw body is kept with the rejected requests; None for a refusal not worth
    keeping (a body that is not a notification at all, an address outside the allowlist).
    """

    def __init__(self, status: int, outcome: Outcome, reason: str, kept: KeptReason | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.outcome = outcome
        self.reason = reason
        self.kept = kept
