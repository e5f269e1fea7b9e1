"""A request the receiver refuses: raised by handlers, turned into a one-line HTTP answer by the middleware."""

from __future__ import annotations

from ingest.metrics import RequestOutcome


class Rejected(Exception):
    """Refuse the request with `status` and a one-line `reason`, counted under `outcome`."""

    def __init__(self, status: int, outcome: RequestOutcome, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.outcome = outcome
        self.reason = reason
