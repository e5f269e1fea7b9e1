"""`cvco-ipn payment show REF`: a payment's state, the notifications received for it, the events published.

The lookup itself is `workers.lookup` (the web console calls it too). `CVCO_SHOPS` is not read, so a
missing or broken one does not stop support from looking a payment up.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from arq.connections import ArqRedis

from cli.runner import UsageError, run_with_redis
from schemas.literal import literal
from schemas.settings import Settings
from workers.lookup import PaymentRecord, find_payments

_STATE_LINES = ("shop_id", "mode", "order_id", "trans_id", "phase", "amount", "paid_amount", "cvco_amount")


def register(commands: argparse._SubParsersAction[Any]) -> None:
    payment = commands.add_parser("payment", help="look a payment up: state, notifications, events")
    actions = payment.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser(
        "show",
        help="every payment REF names: an order id, a vads_trans_uuid, a vads_trans_id or a payment key",
        description="Exit 0 when a payment matches, 1 when none does, 2 on bad input or Redis unreachable.",
    )
    show.add_argument("ref", metavar="REF", help="order id, vads_trans_uuid, vads_trans_id or payment key")
    show.add_argument("--shop", help="only payments of this shop (vads_site_id)")
    show.add_argument("--json", action="store_true", help='{"payments": [...]} instead of text')
    show.set_defaults(handler=run_show)


def _value(value: object) -> str:
    return "-" if value is None else literal(str(value))


def _print_record(record: PaymentRecord) -> None:
    state = record.state
    print(f"payment {literal(record.payment_key)}")
    for name in _STATE_LINES:
        print(f"  {name}: {_value(state.get(name))}")
    print(f"  flags: {_value(', '.join(map(str, state.get('flags') or [])) or None)}")
    last = record.events[-1] if record.events else None
    print(f"  last event: {_value(last['type'] if last else None)}")
    for slot, leg in sorted((state.get("legs") or {}).items()):
        print(
            f"  leg {_value(slot)}: {_value(leg.get('status'))} {_value(leg.get('amount'))}"
            f" {_value(leg.get('card_brand'))}"
        )
    if record.dropped:
        print(f"  ({record.dropped} older history entries dropped: the history keeps the latest ones)")
    print(f"  notifications ({len(record.notifications)}):")
    for note in record.notifications:
        fields = ("received_at", "source", "status", "trans_uuid", "request_id", "result")
        error = f"  ({_value(note['error'])})" if "error" in note else ""
        print("    " + "  ".join(_value(note[name]) for name in fields) + error)
    print(f"  events ({len(record.events)}):")
    for event in record.events:
        print("    " + "  ".join(_value(event[name]) for name in ("time", "type", "event_id")))


async def _show(redis: ArqRedis, settings: Settings, args: argparse.Namespace) -> int:
    if not args.ref.strip():
        raise UsageError("payment show: REF is empty")
    records = await find_payments(redis, args.ref, args.shop)
    if args.json:
        print(
            json.dumps({"payments": [record.as_json() for record in records]}, indent=2, ensure_ascii=False)
        )
    else:
        for index, record in enumerate(records):
            if index:
                print()
            _print_record(record)
    if not records:
        sys.stderr.write(f"cvco-ipn: no payment matches {literal(args.ref)!s}\n")
        return 1
    return 0


def run_show(args: argparse.Namespace) -> int:
    return run_with_redis(_show, args)
