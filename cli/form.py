"""`cvco-ipn form`: print the signed Chèque-Vacances Connect payment form."""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser("form", help="print a signed CVCO payment form (HTML, or --json)")
    parser.add_argument("--shop", required=True, help="vads_site_id (8 digits)")
    parser.add_argument("--amount", required=True, type=int, help="amount in cents (at least 2000)")
    parser.add_argument("--order-id", help="vads_order_id")
    parser.add_argument("--mode", choices=["TEST", "PRODUCTION"], default="TEST")
    parser.add_argument("--json", action="store_true", help="print the fields as JSON instead of HTML")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    raise SystemExit("cvco-ipn form: not built yet")
