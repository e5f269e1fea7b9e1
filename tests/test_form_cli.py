"""`cvco-ipn form` as an operator runs it: a real process, the real Redis, the contract's exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from html.parser import HTMLParser

from redis.asyncio import Redis

from core.keys import SESSIONS_KEY
from core.sessions import load_session
from core.signature import verify_signature
from schemas.notification import payment_key
from schemas.settings import ShopConfig
from tests.conftest import PRODUCTION_KEY, SHOP_ID, TEST_KEY, TEST_REDIS_URL

SHOPS = json.dumps({SHOP_ID: {"test_key": TEST_KEY, "production_key": PRODUCTION_KEY}})


def cvco_form(*args: str, redis_url: str = TEST_REDIS_URL) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CVCO_")}
    env |= {
        "CVCO_SHOPS": SHOPS,
        "CVCO_REDIS_URL": redis_url,
        "CVCO_PLATFORM_URL": "https://pay.example/vads/",
    }
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "form", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )


async def test_json_output_holds_every_field_the_signature_and_the_action(redis: Redis) -> None:
    done = cvco_form(
        "--shop", SHOP_ID, "--amount", "2990", "--order-id", "CMD-7", "--mode", "PRODUCTION", "--json",
        "--customer-first-name", "Jeanne", "--customer-email", "jg@sample.com", "--ship-to-city", "Labège",
        "--product", "Séjour: 3 jours:1000:2:TRAVEL:ZJJ5520", "--product", "Concert:990:1:ENTERTAINMENT",
        "--ext-info", "Arrival Date=22/07/2020", "--order-info", "Code 3125", "--capture-delay", "7",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    fields = answer["fields"]
    assert answer["action"] == "https://pay.example/vads/"
    assert answer["signature"] == fields["signature"]
    assert fields["vads_ctx_mode"] == "PRODUCTION"
    assert fields["vads_order_id"] == "CMD-7"
    assert fields["vads_cust_first_name"] == "Jeanne"
    assert fields["vads_ship_to_city"] == "Labège"
    assert fields["vads_product_label0"] == "Séjour: 3 jours"
    assert fields["vads_product_ref0"] == "ZJJ5520"
    assert fields["vads_product_type1"] == "ENTERTAINMENT"
    assert fields["vads_ext_info_Arrival Date"] == "22/07/2020"
    assert fields["vads_capture_delay"] == "3"
    assert answer["warnings"] == [
        "vads_capture_delay=7: lowered to 3, the longest Chèque-Vacances Connect allows"
    ]
    shop = ShopConfig.model_validate(json.loads(SHOPS)[SHOP_ID])
    assert verify_signature(fields, fields["signature"], shop) == "valid"
    trans_date = datetime.strptime(fields["vads_trans_date"], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    session = await load_session(
        redis, payment_key(SHOP_ID, "PRODUCTION", trans_date, fields["vads_trans_id"])
    )
    assert session is not None
    assert (session.order_id, session.amount, session.registered_by) == ("CMD-7", 2990, "form")


async def test_html_output_is_the_page_with_the_signed_form(redis: Redis) -> None:
    done = cvco_form("--shop", SHOP_ID, "--amount", "2990", "--auto-submit")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("<!DOCTYPE html>")
    assert '<form method="POST" action="https://pay.example/vads/"' in done.stdout
    assert 'name="vads_payment_cards" value="CVCO"' in done.stdout
    assert ".submit();</script>" in done.stdout
    assert await redis.zcard(SESSIONS_KEY) == 1


def test_the_fragment_option_prints_the_form_element_alone() -> None:
    done = cvco_form("--shop", SHOP_ID, "--amount", "2990", "--fragment")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("<form ")
    assert done.stdout.rstrip().endswith("</form>")
    HTMLParser().feed(done.stdout)


async def test_a_broken_rule_exits_2_with_one_line_on_stderr_and_issues_nothing(redis: Redis) -> None:
    cases = [
        (["--amount", "1999"], "cvco-ipn form: vads_amount='1999': at least 2000 cents"),
        (["--amount", "2990", "--order-id", "CMD 1"], "cvco-ipn form: vads_order_id='CMD 1': only A-Z"),
        (
            ["--amount", "2990", "--product", "A:1000:1:TRAVEL"],
            "cvco-ipn form: vads_amount='2990': cart lines",
        ),
        (["--amount", "2990", "--customer-status", "PERSON"], "cvco-ipn form: vads_cust_status='PERSON'"),
        (["--amount", "2990", "--ext-info", "novalue"], "cvco-ipn form: error: argument --ext-info"),
        (["--amount", "2990", "--product", "A:x:1:TRAVEL"], "cvco-ipn form: error: argument --product"),
    ]
    for args, reason in cases:
        done = cvco_form("--shop", SHOP_ID, *args)
        assert done.returncode == 2, args
        assert done.stdout == ""
        assert done.stderr.startswith(reason), done.stderr
        assert done.stderr.count("\n") == 1, done.stderr
    assert await redis.zcard(SESSIONS_KEY) == 0


def test_an_unknown_shop_exits_2() -> None:
    done = cvco_form("--shop", "87654321", "--amount", "2990")
    assert done.returncode == 2
    assert done.stderr == "cvco-ipn form: vads_site_id='87654321': not a shop of CVCO_SHOPS\n"


def test_a_cart_mismatch_is_only_a_warning_when_allowed() -> None:
    done = cvco_form(
        "--shop", SHOP_ID, "--amount", "2990", "--product", "A:1000:1:TRAVEL", "--allow-cart-mismatch", "--json"
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["warnings"] == [
        "vads_amount=2990: cart lines (amount x qty) sum to 1000, not to the amount"
    ]


def test_redis_unreachable_exits_1_with_one_line() -> None:
    done = cvco_form("--shop", SHOP_ID, "--amount", "2990", redis_url="redis://127.0.0.1:1/12")
    assert done.returncode == 1
    assert done.stderr.startswith("cvco-ipn form: Redis unavailable, no form issued: ")
    assert done.stderr.count("\n") == 1
