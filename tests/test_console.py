"""The operators' console over HTTP: sign-in and its lock-out, sessions and CSRF, what each page shows
against the stores, replay and discard, and hostile platform text shown as text."""

from __future__ import annotations

import html
import json
import re
import subprocess
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from arq.connections import ArqRedis
from markupsafe import escape
from redis.asyncio import Redis

from console import sessions
from console.app import create_console_app
from console.auth import FAILURES_BEFORE_LOCK, SECURITY_HEADERS
from console.common import euros
from console.passwords import hash_password, is_password_hash, verify_password
from core.keys import REJECTED_INDEX_PREFIX
from ingest.rejected_store import get_rejected
from schemas.settings import Settings, ShopConfig
from tests.cli_process import CVCO_IPN, cli_env, run_cli
from tests.conftest import SmtpServer
from tests.notifications import notification, queued, signed
from tests.test_alerts import mail_settings, park
from tests.test_receiver import receiver
from workers import discarded_store, failed_store
from workers.alerts import deliver_alerts
from workers.payment_updates import handle_notification

Client = TestClient[web.Request, web.Application]
PASSWORD = "correct horse battery staple"
USERS = {"ops": hash_password(PASSWORD)}
HOSTILE = '<img src=x onerror=alert(1)>"><script>alert(2)</script>'
PAGES = (
    "/",
    "/payments",
    "/payments?q=order-42",
    "/failed",
    "/failed/ipn:none",
    "/rejected",
    "/rejected/none",
)
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
async def client(settings: Settings, redis: Redis) -> AsyncIterator[Client]:
    app = create_console_app(settings.model_copy(update={"console_users": USERS}))
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def sign_in(client: Client, password: str = PASSWORD) -> int:
    response = await client.post("/login", data={"user": "ops", "password": password}, allow_redirects=False)
    return response.status


async def csrf_of(client: Client, path: str = "/failed") -> str:
    page = await (await client.get(path)).text()
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def test_a_password_hash_is_salted_and_verifies_only_its_password() -> None:
    first, second = hash_password("secret"), hash_password("secret")
    assert first != second and is_password_hash(first)
    assert verify_password("secret", first) and not verify_password("Secret", first)
    assert not verify_password("secret", "plain-text") and not is_password_hash("scrypt$1$2$3$zz$00")


def test_a_session_cookie_is_refused_forged_or_idle() -> None:
    key = b"k" * 32
    session = sessions.new_session("ops", now=1000.0)
    cookie = sessions.encode(session, key)
    assert sessions.decode(cookie, key, idle_s=60, now=1030.0) == session
    assert sessions.decode(cookie, key, idle_s=60, now=1061.0) is None  # idle too long
    assert sessions.decode(cookie, b"x" * 32, idle_s=60, now=1030.0) is None  # another key
    body, _, signature = cookie.partition(".")
    forged = sessions.encode(sessions.new_session("admin", now=1000.0), key).split(".")[0] + "." + signature
    assert sessions.decode(forged, key, idle_s=60, now=1030.0) is None
    assert sessions.decode("garbage", key, idle_s=60, now=1030.0) is None


async def test_every_page_without_a_session_goes_to_sign_in(client: Client) -> None:
    for path in PAGES:
        response = await client.get(path, allow_redirects=False)
        assert (response.status, response.headers["Location"]) == (303, "/login"), path
        assert response.headers["Content-Security-Policy"] == SECURITY_HEADERS["Content-Security-Policy"]
    response = await client.post("/failed/ipn:x/replay", data={}, allow_redirects=False)
    assert response.status == 303
    assert (await client.get("/healthz")).status == 200


async def test_a_wrong_password_is_refused_and_repeated_ones_lock_the_name(
    client: Client,
) -> None:
    assert await sign_in(client, "wrong") == 401
    assert (await client.get("/", allow_redirects=False)).status == 303
    for _ in range(FAILURES_BEFORE_LOCK - 1):
        assert await sign_in(client, "wrong") == 401
    assert await sign_in(client) == 429  # locked, even with the right password
    page = await (await client.post("/login", data={"user": "ops", "password": PASSWORD})).text()
    assert "Trop d'essais" in html.unescape(page)


async def test_signed_in_every_page_answers_with_its_security_headers(
    client: Client,
) -> None:
    signed_in = await client.post("/login", data={"user": "ops", "password": PASSWORD}, allow_redirects=False)
    assert signed_in.status == 303
    set_cookie = signed_in.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie and "Secure" not in set_cookie
    for path in PAGES:
        response = await client.get(path)
        assert response.status == (404 if path.endswith("none") else 200), path
        for name, value in SECURITY_HEADERS.items():
            assert response.headers[name] == value
        assert "<script" not in await response.text()
    proxied = await client.post(
        "/login",
        data={"user": "ops", "password": PASSWORD},
        headers={"X-Forwarded-Proto": "https"},
        allow_redirects=False,
    )
    assert "Secure" in proxied.headers["Set-Cookie"]  # behind an HTTPS proxy


async def test_the_overview_counts_are_the_stores(client: Client, redis: Redis, settings: Settings) -> None:
    for n in range(3):
        await park(redis, settings, f"ipn:parked{n}", trans_id=f"p0000{n}")
    await redis.zadd(REJECTED_INDEX_PREFIX + "shop", {"r1": 1, "r2": 2})
    await sign_in(client)
    page = await (await client.get("/")).text()
    assert re.search(r'id="parked"><a href="/failed">3<', page)
    assert 'id="rejected-shop"><a href="/rejected">2<' in page
    assert 'id="rejected-signature"><a href="/rejected">0<' in page
    assert 'id="worker">non<' in page


async def test_the_overview_shows_todays_events_and_the_latest_alert_mails(
    client: Client, redis: Redis, settings: Settings, shop: ShopConfig, smtp_server: SmtpServer
) -> None:
    await handle_notification(redis, settings, queued(notification("AUTHORISED", amount=2990), shop))
    other = notification("AUTHORISED", amount=5000, trans_id="c00001", uuid="c" * 32)
    await handle_notification(redis, settings, queued(other, shop))
    mailing = mail_settings(settings, smtp_server.url)
    await park(redis, mailing, "ipn:mailed", trans_id="c00002")
    assert await deliver_alerts(redis, mailing) == 1
    await sign_in(client)
    page = await (await client.get("/")).text()
    assert 'id="today-payment.accepted">2<' in page and euros(7990) in page
    assert '<meta http-equiv="refresh" content="30">' in page
    assert "job_parked" in page and "ipn:mailed" in page


async def test_search_an_order_and_open_its_timeline(
    client: Client, redis: Redis, settings: Settings, shop: ShopConfig
) -> None:
    for status in ("AUTHORISED", "CAPTURED"):
        await handle_notification(
            redis,
            settings,
            queued(notification(status, source="BATCH" if status == "CAPTURED" else "PAY"), shop),
        )
    await sign_in(client)
    found = await (await client.get("/payments?q=order-42")).text()
    [link] = re.findall(r'href="(/payments/[^"]+)"', found)
    timeline = await (await client.get(html.unescape(link))).text()
    assert timeline.count("<td>published</td>") == 2
    assert "payment.accepted" in timeline and "payment.captured" in timeline
    assert euros(5000) in timeline
    nothing = await (await client.get("/payments?q=no-such-order")).text()
    assert 'id="nothing"' in nothing
    captured_only = await (await client.get("/events?type=payment.captured")).text()
    assert "payment.captured" in captured_only and "<td>payment.accepted</td>" not in captured_only
    other_shop = await (await client.get("/events?shop=87654321")).text()
    assert "<td>payment." not in other_shop
    assert "<td>payment.captured</td>" in await (await client.get("/events?since=1h")).text()
    await redis.delete(settings.stream)
    await redis.xadd(settings.stream, {"event": '{"type": "payment.accepted"}'}, id="1000-0")  # 1970
    assert "<td>payment." not in await (await client.get("/events?since=7d")).text()


async def test_replay_and_discard_act_on_the_store_and_a_post_without_csrf_changes_nothing(
    client: Client, redis: Redis, pool: ArqRedis, settings: Settings
) -> None:
    await park(redis, settings, "ipn:one", trans_id="a00001")
    await park(redis, settings, "ipn:two", trans_id="a00002")
    await sign_in(client)
    refused = await client.post("/failed/ipn:one/replay", data={"csrf": "guess"}, allow_redirects=False)
    assert refused.status == 403
    refused = await client.post("/failed/ipn:two/discard", data={"reason": "x"}, allow_redirects=False)
    assert refused.status == 403
    assert await redis.zcard(settings.queue_name) == 0 and await failed_store.count(redis) == 2

    token = await csrf_of(client)
    replayed = await client.post("/failed/ipn:one/replay", data={"csrf": token}, allow_redirects=False)
    assert (replayed.status, replayed.headers["Location"]) == (303, "/failed?done=replay")
    entry = await failed_store.get(redis, "ipn:one")
    assert entry is not None and await redis.zscore(settings.queue_name, entry.replay_job_id) is not None

    discarded = await client.post(
        "/failed/ipn:two/discard",
        data={"csrf": token, "reason": "vérifié au Back Office"},
        allow_redirects=False,
    )
    assert discarded.status == 303
    assert await failed_store.get(redis, "ipn:two") is None
    record = await discarded_store.get(redis, "ipn:two")
    assert record is not None and record.reason == "vérifié au Back Office (par ops, console)"
    page = await (await client.get("/failed")).text()
    assert "ipn:one" in page and "ipn:two" not in page


async def test_hostile_platform_text_is_shown_as_text(
    client: Client, redis: Redis, settings: Settings, shop: ShopConfig
) -> None:
    fields = notification("AUTHORISED", extra={"vads_order_id": HOSTILE, "vads_cust_first_name": HOSTILE})
    await handle_notification(redis, settings, queued(fields, shop))
    await failed_store.park(
        redis,
        failed_id="ipn:hostile",
        job_id="ipn:hostile",
        payload={"fields": {**fields, "signature": "s"}},
        error=ValueError(HOSTILE),
        traceback="",
        tries=1,
        failed_max=100,
        failed_max_bytes=1024 * 1024,
    )
    await sign_in(client)
    for path in ("/failed", "/failed/ipn:hostile", "/payments?q=" + HOSTILE, "/events"):
        page = await (await client.get(path)).text()
        assert HOSTILE not in page and "<script>" not in page and "<img" not in page
        assert str(escape(HOSTILE)) in page


def test_the_console_refuses_to_start_without_users_and_hashes_a_password() -> None:
    ran = run_cli("console", "--port", "18081", env=cli_env())
    assert ran.status == 2 and ran.err_lines == [
        "cvco-ipn: bad configuration: CVCO_CONSOLE_USERS names nobody who may sign in"
    ]
    ran = run_cli("console", env=cli_env(CVCO_CONSOLE_USERS='{"ops": "plain"}'))
    assert ran.status == 2 and "CVCO_CONSOLE_USERS[ops] is not a hash" in ran.err
    hashed = subprocess.run(
        [CVCO_IPN, "console", "hash-password"],
        input=b"s3cret\n",
        capture_output=True,
        env=cli_env(),
        check=True,
    )
    assert verify_password("s3cret", hashed.stdout.decode().strip())


async def test_a_parked_jobs_page_masks_the_signature_and_vads_hash(
    client: Client, redis: Redis, settings: Settings
) -> None:
    await park(redis, settings, "ipn:masked", trans_id="m00001")
    entry = await failed_store.get(redis, "ipn:masked")
    assert entry is not None
    fields = json.loads(entry.payload)["fields"]
    await sign_in(client)
    page = await (await client.get("/failed/ipn:masked")).text()
    assert fields["vads_trans_id"] in page and entry.error_class in page
    assert fields["signature"] not in page and "signature-must-not-leak" not in page
    assert "••••••" in page


async def test_a_forgotten_shops_refusal_is_retried_once_the_shop_is_configured(
    redis: Redis, settings: Settings, shop: ShopConfig
) -> None:
    """Posted for a shop the receiver does not know: 403, kept; retried from the console it is still
    refused, until the console's configuration has the shop; then it is queued and leaves the list."""
    forgotten = "87654321"
    fields = signed({**notification("AUTHORISED"), "vads_site_id": forgotten}, shop)
    async with receiver(settings) as posting:
        answer = await posting.post("/ipn", data=urlencode(fields), headers=FORM)
        assert answer.status == 403
    fixed = settings.model_copy(update={"shops": {**settings.shops, forgotten: shop}})
    for configured, expected in ((settings, "Toujours refusée"), (fixed, "mise en file")):
        app = create_console_app(configured.model_copy(update={"console_users": USERS}))
        async with TestClient(TestServer(app)) as client:
            await sign_in(client)
            listing = await (await client.get("/rejected")).text()
            [rejected_id] = re.findall(r'href="/rejected/([^"]+)"', listing)
            shown = await (await client.get(f"/rejected/{rejected_id}")).text()
            assert forgotten in shown and fields["signature"] not in shown
            token = await csrf_of(client, "/rejected")
            page = await (await client.post(f"/rejected/{rejected_id}/retry", data={"csrf": token})).text()
            assert expected in html.unescape(page)
    assert await redis.zcard(settings.queue_name) == 1
    assert await get_rejected(redis, html.unescape(rejected_id)) is None


async def test_a_bulk_replay_takes_what_the_filters_keep_once_confirmed_with_its_count(
    client: Client, redis: Redis, settings: Settings
) -> None:
    for n in range(3):
        await park(redis, settings, f"ipn:bulk{n}", trans_id=f"k0000{n}")
    await sign_in(client)
    kept = await (await client.get("/failed?error=invalidnotif")).text()
    assert "3 tâche(s) retenue(s)" in html.unescape(kept)
    assert "0 tâche(s) retenue(s)" in html.unescape(
        await (await client.get("/failed?error=NoSuchError")).text()
    )
    confirm = html.unescape(await (await client.get("/failed/bulk?action=replay&error=invalidnotif")).text())
    assert "Rejouer 3 tâche(s) en échec ?" in confirm
    token = await csrf_of(client, "/failed/bulk?action=replay&error=invalidnotif")
    form = {"csrf": token, "action": "replay", "error": "invalidnotif"}
    stale = await client.post("/failed/bulk", data={**form, "expected": "2"}, allow_redirects=False)
    assert stale.status == 409 and await redis.zcard(settings.queue_name) == 0
    done = await client.post("/failed/bulk", data={**form, "expected": "3"}, allow_redirects=False)
    assert (done.status, done.headers["Location"]) == (303, "/failed?done=bulk-replay&n=3")
    assert await redis.zcard(settings.queue_name) == 3
    token = await csrf_of(client, "/failed/bulk?action=discard&error=invalidnotif")
    form = {"csrf": token, "action": "discard", "error": "invalidnotif", "expected": "3"}
    assert (await client.post("/failed/bulk", data=form, allow_redirects=False)).status == 400  # no reason
    discarded = await client.post("/failed/bulk", data={**form, "reason": "doublons"}, allow_redirects=False)
    assert discarded.status == 303 and await failed_store.count(redis) == 0
