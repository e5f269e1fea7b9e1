"""`cvco-ipn rejected list|show|retry` in a subprocess, on requests a real receiver refused and kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import unicodedata
from datetime import UTC, datetime
from urllib.parse import urlencode

from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st
from pydantic import SecretStr
from redis.asyncio import Redis

from cli.rejected import SHOW_FIELDS, list_line, show_lines
from ingest.rejected_store import RejectedRequest
from ingest.rejections import KEPT_REASONS, KeptReason
from schemas.job import notification_job_id
from schemas.settings import Settings, ShopConfig
from tests.conftest import PRODUCTION_KEY, SHOP_ID, TEST_KEY, TEST_REDIS_URL
from tests.test_receiver import FORM, notification, receiver, signed, stored_job

FORGOTTEN = "87654321"
HOSTILE_ORDER = "CMD-7\n99999999\tforged\x1b[2J"


KEYS = {"test_key": TEST_KEY, "production_key": PRODUCTION_KEY}


def cli(*argv: str, shops: dict[str, object] | None = None) -> subprocess.CompletedProcess[str]:
    """`cvco-ipn rejected ARGV` on the test Redis, with these shops (default: the test shop)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CVCO_")}
    env |= {"CVCO_REDIS_URL": TEST_REDIS_URL, "CVCO_SHOPS": json.dumps(shops or {SHOP_ID: KEYS})}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "rejected", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def _refuse_three(settings: Settings, shop: ShopConfig) -> dict[str, dict[str, str]]:
    """A forgotten shop's notification (403), a tampered one (401), a browser return (400); by reason."""
    sent = {
        "shop": signed(notification(vads_site_id=FORGOTTEN, vads_order_id=HOSTILE_ORDER), shop),
        "signature": signed(notification(), shop) | {"vads_amount": "1"},
        "not_notification": signed(
            {k: v for k, v in notification().items() if k not in ("vads_hash", "vads_url_check_src")}, shop
        ),
    }
    async with receiver(settings) as client:
        for fields in sent.values():
            response = await client.post("/ipn", data=urlencode(fields), headers=FORM)
            assert response.status in (400, 401, 403)
    return sent


def _no_raw_controls(text: str) -> bool:
    return not [c for c in text if unicodedata.category(c) in ("Cc", "Cf") and c not in "\n\t"]


async def test_refusals_are_listed_shown_and_a_forgotten_shops_retried_once_configured(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    """list shows the three (one a line, hostile text literal); show gives the raw body; retry with the
    shop now configured queues the forgotten shop's notification as the receiver would and only it."""
    sent = await _refuse_three(settings, shop)
    listed = cli("list")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert sorted(row[5] for row in rows) == ["not_notification", "shop", "signature"]
    assert all(len(row) == 6 and row[2] == "127.0.0.1" for row in rows)
    assert _no_raw_controls(listed.stdout)
    [forgotten] = [row for row in rows if row[5] == "shop"]
    assert forgotten[3:5] == [FORGOTTEN, "CMD-7\\x0a99999999\\x09forged\\x1b[2J"]

    as_json = json.loads(cli("list", "--json", "--reason", "shop").stdout)
    assert [(entry["id"], entry["order_id"]) for entry in as_json] == [(forgotten[0], HOSTILE_ORDER)]

    shown = cli("show", forgotten[0])
    assert shown.returncode == 0
    assert "reason: shop" in shown.stdout and "message: unknown vads_site_id" in shown.stdout
    assert urlencode(sent["shop"]) in shown.stdout and _no_raw_controls(shown.stdout)

    dry = cli("retry", "--all", "--dry-run", shops={SHOP_ID: KEYS, FORGOTTEN: KEYS})
    assert dry.returncode == 1  # two are still refused
    assert f"would queue {forgotten[0]}" in dry.stdout and dry.stdout.count("still refused ") == 2
    assert await redis.zcard(settings.queue_name) == 0

    still = cli("retry", forgotten[0])  # the shop is not configured yet: it stays
    assert (
        still.returncode == 1 and "still refused" in still.stdout and "unknown vads_site_id" in still.stdout
    )

    retried = cli("retry", forgotten[0], shops={SHOP_ID: KEYS, FORGOTTEN: KEYS})
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert f"queued {forgotten[0]} (shop {FORGOTTEN}" in retried.stdout
    assert await redis.zcard(settings.queue_name) == 1
    _, queued = await stored_job(redis, sent["shop"])
    assert queued.fields == sent["shop"] and queued.request_id == forgotten[0]
    assert f"as job {notification_job_id(sent['shop'])}" in retried.stdout

    assert sorted(row.split("\t")[5] for row in cli("list").stdout.splitlines()) == [
        "not_notification",
        "signature",
    ]
    again = cli("retry", forgotten[0], shops={SHOP_ID: KEYS, FORGOTTEN: KEYS})
    assert again.returncode == 2 and "not kept" in again.stderr and len(again.stderr.splitlines()) == 1


async def test_a_corrected_key_lets_a_401_through_and_bad_arguments_are_one_line_errors(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    """A notification signed with a key the receiver did not have (a rotation): 401, then queued by retry
    once CVCO_SHOPS holds that key. Unknown ids, ID with --all, a bad --since: exit 2, one line."""
    rotated = ShopConfig(test_key=SecretStr("rotated-key-0001"), modes=("TEST",))
    fields = signed(notification(), rotated)
    async with receiver(settings) as client:
        assert (await client.post("/ipn", data=urlencode(fields), headers=FORM)).status == 401
    [row] = [line.split("\t") for line in cli("list", "--since", "1h").stdout.splitlines()]
    done = cli("retry", row[0], shops={SHOP_ID: {"test_key": "rotated-key-0001", "modes": ["TEST"]}})
    assert done.returncode == 0, done.stdout + done.stderr
    await stored_job(redis, fields)
    for argv in (
        ("retry", "nope"),
        ("retry", "x", "--all"),
        ("list", "--since", "yesterday"),
        ("show", "nope"),
    ):
        bad = cli(*argv)
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, argv


hostile = st.text(st.characters(), max_size=40)


@examples(max_examples=300)
@given(
    reason=st.sampled_from(KEPT_REASONS),
    message=hostile,
    client_ip=hostile,
    request_id=hostile,
    shop_id=hostile,
    order_id=hostile,
    body=st.binary(max_size=80) | hostile.map(lambda text: text.encode("utf-8", "surrogatepass")),
)
def test_every_echoed_field_of_list_and_show_is_shown_literally(
    reason: KeptReason,
    message: str,
    client_ip: str,
    request_id: str,
    shop_id: str,
    order_id: str,
    body: bytes,
) -> None:
    """Arbitrary Unicode and bytes in every field: `list` is one line of six columns, `show` its fixed
    lines plus one of body, and neither holds a raw control, format or separator character."""
    entry = RejectedRequest(
        reason=reason,
        status=401,
        message=message,
        received_at=datetime.now(UTC),
        client_ip=client_ip,
        request_id=request_id,
        shop_id=shop_id,
        order_id=order_id,
        body=body,
    )
    line = list_line(entry)
    assert len(line.split("\t")) == 6 and "\n" not in line and _no_raw_controls(line.replace("\t", ""))
    shown = show_lines(entry)
    assert len(shown) == len(SHOW_FIELDS) + 4
    assert all("\n" not in part and "\t" not in part and _no_raw_controls(part) for part in shown)
    assert all(not [c for c in part if unicodedata.category(c) in ("Zl", "Zp", "Cs")] for part in shown)
