"""A payment session being watched for silent expiry (the platform may never notify a timed-out session)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict

from schemas.notification import payment_key
from schemas.settings import Settings


class PendingPayment(BaseModel):
    """A payment that was started (form issued, or first notification pending) and has a deadline."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    shop_id: str
    mode: Literal["TEST", "PRODUCTION"]
    trans_id: str
    trans_date: datetime
    order_id: str | None
    amount: int
    deadline: datetime
    registered_by: Literal["form", "notification"]

    @property
    def key(self) -> str:
        return payment_key(self.shop_id, self.mode, self.trans_date, self.trans_id)


def session_deadline(trans_date: datetime, settings: Settings) -> datetime:
    """When a silent session is declared expired: the session length plus the grace period after it."""
    return trans_date + timedelta(seconds=settings.session_timeout_s + settings.session_grace_s)
