"""`cvco-ipn payment show`, as a subprocess against the test Redis, after real workers processed traffic.

The command runs without `CVCO_SHOPS` (and with a broken one): support looks payments up whatever the
shop configuration.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from arq.connections import ArqRedis
from redis.asyncio import Redis

from core.sessions import track_session
from schemas.settings import Settings, ShopConfig
from tests.conftest import SHOP_ID, TEST_REDIS_URL, free_port
from tests.notifications import UUID_CB, UUID_PAY, drain, enqueue_notification, notification, queued
from tests.test_expiry import pending
from workers.expiry import sweep_expired_sessions
from workers.history import HISTORY_CAP

CLI = str(Path(sys.executable).with_name("cvco-ipn"))
KEY_A = f"{SHOP_ID}:TEST:20240501:ab12cd"
KEY_B = f"{SHOP_ID}:TEST:20240501:ab12ce"


def show(*argv: str, redis_url: str = TEST_REDIS_URL, **env: str) -> subprocess.CompletedProcess[str]:
    """`cvco-ipn payment show ...` with only the Redis URL (and `env`) configured."""
    clean = {name: value for name, value in os.environ.items() if not name.startswith("CVCO_")}
    return subprocess.run(  # argv built here, no shell
        [CLI, "payment", "show", *argv],
        env={**clean, "CVCO_REDIS_URL": redis_url, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def payments(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    data: dict[str, list[dict[str, Any]]] = json.loads(done.stdout)
    assert list(data) == ["payments"]
    return data["payments"]


async def two_attempts(pool: ArqRedis, settings: Settings, shop: ShopConfig) -> None:
    """Order order-42: attempt A refused, attempt B accepted and then redelivered by the platform."""
    refused = notification("REFUSED", trans_id="Ab12Cd", uuid=UUID_PAY, auth="05")
    accepted = notification("AUTHORISED", trans_id="Ab12Ce", uuid=UUID_CB)
    for fields in (refused, accepted, {**accepted, "vads_url_check_src": "RETRY"}):
        await enqueue_notification(pool, settings, queued(fields, shop))
        assert await drain(settings) == 0


async def test_an_order_with_two_payments_by_each_kind_of_ref(
    pool: ArqRedis, settings: Settings, shop: ShopConfig
) -> None:
    await two_attempts(pool, settings, shop)

    by_order = show("order-42", "--json", CVCO_SHOPS="{not json")
    assert by_order.returncode == 0, by_order.stderr
    found = payments(by_order)
    assert [payment["payment_key"] for payment in found] == [KEY_A, KEY_B]
    refused, accepted = found
    assert refused["state"]["phase"] == "refused"
    assert [(n["status"], n["source"], n["result"]) for n in refused["notifications"]] == [
        ("REFUSED", "PAY", "published")
    ]
    assert [(n["status"], n["source"], n["result"]) for n in accepted["notifications"]] == [
        ("AUTHORISED", "PAY", "published"),
        ("AUTHORISED", "RETRY", "duplicate"),
    ]
    assert {n["trans_uuid"] for n in accepted["notifications"]} == {UUID_CB}
    assert all(n["request_id"] == "test" and n["received_at"] for n in accepted["notifications"])
    (event,) = accepted["events"]
    assert event["type"] == "payment.accepted" and event["time"] and event["stream_id"]
    stream = await pool.xrange(settings.stream)
    assert {json.loads(entry[b"event"])["event_id"] for _, entry in stream} == {
        e["event_id"] for payment in found for e in payment["events"]
    }

    for ref in (UUID_CB, UUID_CB.upper(), "Ab12Ce", "ab12ce", KEY_B):
        done = show(ref, "--json")
        assert done.returncode == 0, (ref, done.stderr)
        assert [payment["payment_key"] for payment in payments(done)] == [KEY_B], ref

    text = show("order-42")
    assert text.returncode == 0
    assert f"payment {KEY_A}" in text.stdout and f"payment {KEY_B}" in text.stdout
    assert "last event: payment.accepted" in text.stdout
    assert "RETRY  AUTHORISED  " + UUID_CB + "  test  duplicate" in text.stdout


async def test_nothing_matches_or_redis_down_exits_1_and_bad_input_exits_2_in_one_line(
    pool: ArqRedis, settings: Settings, shop: ShopConfig
) -> None:
    await two_attempts(pool, settings, shop)
    for argv in (("no-such-order",), ("order-42", "--shop", "87654321"), ("no-such-order", "--json")):
        done = show(*argv)
        assert done.returncode == 1, argv
        assert done.stderr.count("\n") == 1 and "no payment matches" in done.stderr
    assert payments(show("nothing", "--json")) == []

    unreachable = show("order-42", redis_url=f"redis://127.0.0.1:{free_port()}/0")
    not_redis = show("order-42", redis_url="http://127.0.0.1/0")
    empty = show("  ")
    for done, status in ((unreachable, 1), (not_redis, 2), (empty, 2)):
        assert done.returncode == status  # Redis down is 1, as for every command; bad input 2
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "cannot reach Redis" in unreachable.stderr
    assert "CVCO_REDIS_URL" in not_redis.stderr


async def test_the_history_keeps_the_latest_entries_and_says_how_many_were_dropped(
    pool: ArqRedis, settings: Settings, shop: ShopConfig
) -> None:
    extra = 3
    for index in range(HISTORY_CAP + extra):
        fields = notification("AUTHORISED", extra={"vads_ext_info_try": str(index)})
        await enqueue_notification(pool, settings, queued(fields, shop))
    assert await drain(settings) == 0

    (payment,) = payments(show(KEY_A, "--json"))
    assert payment["history_dropped"] == extra
    assert len(payment["notifications"]) == HISTORY_CAP
    assert show(KEY_A).stdout.count(f"({extra} older history entries dropped") == 1
    assert await pool.ttl(f"cvco:payment:{KEY_A}") > 0


async def test_platform_text_is_shown_literally(pool: ArqRedis, settings: Settings, shop: ShopConfig) -> None:
    """An order id holding a terminal escape and rich markup prints as visible text, never obeyed."""
    order = "evil\x1b]0;pwned\x07[bold]x[/bold]"
    await enqueue_notification(pool, settings, queued(notification(extra={"vads_order_id": order}), shop))
    assert await drain(settings) == 0

    done = show(order)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout
    assert "order_id: evil\\x1b]0;pwned\\x07[bold]x[/bold]" in done.stdout
    assert payments(show(order, "--json"))[0]["state"]["order_id"] == order


async def test_a_parked_notification_of_a_known_payment_is_in_its_history(
    pool: ArqRedis, settings: Settings, shop: ShopConfig
) -> None:
    for status in ("AUTHORISED", "NOT_A_STATUS"):  # one at a time: a parked first has no payment to join
        await enqueue_notification(pool, settings, queued(notification(status), shop))
        assert await drain(settings) == 0

    (payment,) = payments(show("order-42", "--json"))
    assert [(n["status"], n["result"]) for n in payment["notifications"]] == [
        ("AUTHORISED", "published"),
        ("NOT_A_STATUS", "parked"),
    ]
    assert payment["notifications"][1]["error"]
    assert payment["state"]["phase"] == "accepted"


async def test_a_detected_expiry_is_an_event_of_the_payment_not_a_notification(
    redis: Redis, pool: ArqRedis, settings: Settings, shop: ShopConfig
) -> None:
    """Expired in silence, then AUTHORISED: one notification, two events, the expiry's from SESSION_TIMEOUT."""
    await track_session(redis, pending("Ab12Cd", trans_date=datetime(2024, 5, 1, 12, 0, tzinfo=UTC)))
    assert await sweep_expired_sessions(redis, settings) == 1
    assert await sweep_expired_sessions(redis, settings) == 0
    await enqueue_notification(pool, settings, queued(notification("AUTHORISED"), shop))
    assert await drain(settings) == 0

    (payment,) = payments(show("Ab12Cd", "--json"))
    assert [(n["status"], n["result"]) for n in payment["notifications"]] == [("AUTHORISED", "published")]
    assert [(e["type"], e["source"]) for e in payment["events"]] == [
        ("payment.expired", "SESSION_TIMEOUT"),
        ("payment.accepted", "PAY"),
    ]
