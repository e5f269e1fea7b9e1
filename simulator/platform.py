"""The platform as the simulator plays it: a `Delivery` is one thing it does, a `Platform` makes them for
one shop (fresh identifiers, buyer data, signature). Pure: no I/O.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from schemas.session import PendingPayment
from schemas.settings import ShopConfig
from simulator.fields import (
    CVCO_MIN_AMOUNT,
    MASK,
    Leg,
    Payment,
    echoed_fields,
    hex_id,
    masked_cvco_account,
    signed,
    single_fields,
)


@dataclass(frozen=True)
class Delivery:
    """One thing the platform does: POST `fields` (signed) to the notification URL, or, when `session` is
    set, issue a payment form and then never notify (the session must be registered for expiry watch).

    `expected` are the event types it should add to the stream when delivered in order; `parks` says the
    notification is signed but unparsable, so it must land in the failed-job list instead.
    """

    scenario: str
    step: str
    order_id: str
    fields: Mapping[str, str] = field(default_factory=dict)
    expected: tuple[str, ...] = ()
    session: PendingPayment | None = None
    parks: bool = False


class Platform:
    """The platform for one shop: allocates unique transaction ids and signs what it sends."""

    def __init__(
        self,
        shop_id: str,
        shop: ShopConfig,
        mode: str,
        rng: random.Random,
        now: datetime,
        *,
        session_timeout_s: int = 600,
        session_grace_s: int = 300,
        order_prefix: str = "CMD",
    ) -> None:
        self.shop_id, self.shop, self.mode, self.rng = shop_id, shop, mode, rng
        self.now = now.replace(microsecond=0)
        self.session_timeout_s = session_timeout_s
        self.session_grace_s = session_grace_s
        self.order_prefix = order_prefix
        # trans_id must be unique per shop per UTC day: a counter from a random start never repeats in a run
        self._next_trans_id = rng.randrange(900_000)
        self._payments = 0

    def payment(self, amount: int | None = None) -> Payment:
        """A new payment with fresh identifiers and buyer data."""
        self._payments += 1
        trans_id = f"{self._next_trans_id % 900_000:06d}"
        self._next_trans_id += 1
        order_id = f"{self.order_prefix}-{self._payments:05d}-{trans_id}"
        amount = amount or self.rng.randrange(CVCO_MIN_AMOUNT, 60_000, 10)
        return Payment(
            shop_id=self.shop_id,
            mode=self.mode,
            trans_id=trans_id,
            trans_date=self.now,
            order_id=order_id,
            amount=amount,
            trans_uuid=self.uuid(),
            card_number=masked_cvco_account(self.rng),
            capture_delay=self.rng.randrange(0, 4),
            echoed=echoed_fields(self.rng, order_id, amount),
        )

    def uuid(self) -> str:
        return hex_id(self.rng, 32)

    def send(
        self, scenario: str, step: str, payment: Payment, fields: Mapping[str, str], *expected: str
    ) -> Delivery:
        return Delivery(scenario, step, payment.order_id, signed(fields, self.shop, self.mode), expected)

    def single(
        self,
        payment: Payment,
        status: str,
        source: str,
        *,
        auth_result: str = "0",
        operation_type: str | None = "DEBIT",
        trans_uuid: str | None = None,
    ) -> dict[str, str]:
        return single_fields(
            payment,
            self.rng,
            status=status,
            source=source,
            auth_result=auth_result,
            operation_type=operation_type,
            trans_uuid=trans_uuid,
        )

    def cascade_legs(self, payment: Payment, complement_status: str, complement_auth: str) -> list[Leg]:
        """CVCO for part of the amount (the buyer's balance), then a CB card for the rest."""
        cvco_part = self.rng.randrange(500, payment.amount - 500, 10)
        cvco = Leg("CVCO", cvco_part, "AUTHORISED", "0", self.uuid(), payment.card_number)
        card = f"4970{self.rng.randrange(10, 99)}{MASK * 6}{self.rng.randrange(1000, 9999)}"
        complement = Leg(
            "CB", payment.amount - cvco_part, complement_status, complement_auth, self.uuid(), card
        )
        return [cvco, complement]
