"""`cvco-ipn form`: print the signed Chèque-Vacances Connect payment form (HTML page, fragment or JSON).

A request that breaks a rule exits 2 with a one-line reason; Redis unreachable exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from pydantic import ValidationError
from redis.exceptions import RedisError

from cli.logs import configure_logging
from ingest.form import CartLine, Customer, FormOrder, Shipping
from ingest.form_issue import IssuedForm, issue_form
from ingest.form_rules import PRODUCT_TYPES, FormRuleError
from ingest.redis_connection import redis_client
from schemas.settings import Settings, load_settings


def _product(text: str) -> CartLine:
    """`LABEL:AMOUNT:QTY:TYPE[:REF]`; the label may hold colons (the other parts are read from the right)."""
    parts = text.rsplit(":", 3)
    if len(parts) == 4 and parts[3] not in PRODUCT_TYPES:
        parts = text.rsplit(":", 4)
    if len(parts) < 4:
        raise argparse.ArgumentTypeError(f"{text!r} is not LABEL:AMOUNT:QTY:TYPE[:REF]")
    label, amount, qty, kind, *ref = parts
    try:
        return CartLine(label=label, amount=int(amount), qty=int(qty), type=kind, ref=ref[0] if ref else None)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: AMOUNT and QTY must be whole numbers") from e


def _ext_info(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value


def register(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser(
        "form",
        help="print a signed CVCO payment form (HTML, or --json)",
        description="Print a signed Chèque-Vacances Connect payment form and watch its session for expiry.",
    )
    parser.add_argument("--shop", required=True, help="vads_site_id (8 digits)")
    parser.add_argument("--amount", required=True, type=int, help="amount in cents (at least 2000)")
    parser.add_argument("--order-id", help="vads_order_id: A-Z a-z 0-9 _ - (up to 64)")
    parser.add_argument("--mode", choices=["TEST", "PRODUCTION"], default="TEST")
    parser.add_argument("--json", action="store_true", help="print the fields as JSON instead of HTML")
    parser.add_argument("--fragment", action="store_true", help="print only the <form> element, to embed")
    parser.add_argument("--auto-submit", action="store_true", help="the page posts itself on load")
    parser.add_argument("--capture-delay", type=int, metavar="DAYS", help="days before capture (above 3: 3)")
    for name in ("order_info", "order_info2", "order_info3"):
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, help=f"vads_{name}")
    for title, model, dest_prefix, field_prefix in (
        ("buyer (vads_cust_*)", Customer, "customer_", "vads_cust_"),
        ("delivery (vads_ship_to_*)", Shipping, "ship_to_", "vads_ship_to_"),
    ):
        group = parser.add_argument_group(title)
        for name in model.model_fields:
            group.add_argument(
                f"--{(dest_prefix + name).replace('_', '-')}",
                dest=dest_prefix + name,
                metavar="TEXT",
                help=field_prefix + name,
            )
    cart = parser.add_argument_group("cart and extra fields")
    cart.add_argument(
        "--product",
        action="append",
        type=_product,
        default=[],
        metavar="LABEL:AMOUNT:QTY:TYPE[:REF]",
        help=f"a cart line, repeatable; TYPE is one of {', '.join(PRODUCT_TYPES)}",
    )
    cart.add_argument(
        "--ext-info",
        action="append",
        type=_ext_info,
        default=[],
        metavar="NAME=VALUE",
        help="a vads_ext_info_NAME field, repeatable",
    )
    cart.add_argument(
        "--allow-cart-mismatch",
        action="store_true",
        help="warn instead of refusing a cart not summing to --amount",
    )
    parser.set_defaults(handler=run)


def order_from_args(args: argparse.Namespace) -> FormOrder:
    """The `FormOrder` the command line asks for (pydantic refuses a wrong type)."""
    options = vars(args)
    return FormOrder(
        shop_id=args.shop,
        amount=args.amount,
        order_id=args.order_id,
        mode=args.mode,
        capture_delay=args.capture_delay,
        order_info=args.order_info,
        order_info2=args.order_info2,
        order_info3=args.order_info3,
        customer=Customer(**{name: options[f"customer_{name}"] for name in Customer.model_fields}),
        shipping=Shipping(**{name: options[f"ship_to_{name}"] for name in Shipping.model_fields}),
        products=tuple(args.product),
        ext_info=dict(args.ext_info),
        allow_cart_mismatch=args.allow_cart_mismatch,
    )


async def _issue(settings: Settings, order: FormOrder) -> IssuedForm:
    redis = redis_client(settings, socket_timeout_s=settings.redis_timeout_s)
    try:
        return await issue_form(redis, settings, order)
    finally:
        await redis.aclose()


def run(args: argparse.Namespace) -> int:
    configure_logging()
    settings = load_settings(require_shops=True)
    try:
        issued = asyncio.run(_issue(settings, order_from_args(args)))
    except FormRuleError as e:
        sys.stderr.write(f"cvco-ipn form: {e}\n")
        return 2
    except ValidationError as e:
        first = e.errors()[0]
        sys.stderr.write(f"cvco-ipn form: {'.'.join(map(str, first['loc']))}: {first['msg']}\n")
        return 2
    except (RedisError, OSError) as e:
        reason = " ".join(str(e).split())
        sys.stderr.write(f"cvco-ipn form: Redis unavailable, no form issued: {type(e).__name__}: {reason}\n")
        return 1
    if args.json:
        sys.stdout.write(json.dumps(issued.as_json(), ensure_ascii=False, indent=2) + "\n")
    elif args.fragment:
        sys.stdout.write(issued.fragment() + "\n")
    else:
        sys.stdout.write(issued.page(auto_submit=args.auto_submit))
    return 0
