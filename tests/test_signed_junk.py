"""Signed content that is not a notification, unsigned noise around a signed one, and a flood of either:
refused or collapsed at the receiver, bounded in the failed store, and nothing genuine lost."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from urllib.parse import urlencode

from redis.asyncio import Redis

from forms.form import FormOrder
from forms.issue import issue_form
from ingest.rejected_store import list_rejected
from schemas.settings import Settings, ShopConfig
from tests.conftest import SHOP_ID, TEST_REDIS_URL
from tests.notifications import drain
from tests.notifications import notification as worker_notification
from tests.notifications import signed as worker_signed
from tests.test_receiver import FORM, notification, receiver, signed, stored_job
from workers import failed_store


def cli_failed_list(**env: str) -> str:
    """`cvco-ipn failed list` in a subprocess on the test Redis: what an operator sees."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("CVCO_")}
    environment |= {"CVCO_REDIS_URL": TEST_REDIS_URL, **env}
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "failed", "list"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


async def _signed_form(redis: Redis, settings: Settings) -> dict[str, str]:
    """The hidden fields of a real payment form, as every buyer's browser holds them."""
    issued = await issue_form(redis, settings, FormOrder(shop_id=SHOP_ID, amount=4525, order_id="CMD-1"))
    return {**issued.fields}


async def test_a_signed_payment_form_or_browser_return_is_400_kept_and_not_queued(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    """A form's fields and a browser return are well signed but no notification: 400, kept, nothing queued."""
    form = await _signed_form(redis, settings)
    browser_return = {
        name: value
        for name, value in notification().items()
        if name not in ("vads_hash", "vads_url_check_src")
    }
    async with receiver(settings) as client:
        for fields in (form, signed(browser_return, shop)):
            response = await client.post("/ipn", data=urlencode(fields), headers=FORM)
            text = await response.text()
            assert response.status == 400
            assert text.startswith("signed, but not a notification") and "\n" not in text
    assert await redis.zcard(settings.queue_name) == 0
    kept = await list_rejected(redis, reasons=["not_notification"])
    assert [entry.order_id for entry in kept] == ["CMD-1", "order-42"]


async def test_a_thousand_padded_form_copies_lose_nothing_genuine(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    """1,000 copies of a signed form with 60 KB of unsigned padding, failed_max 50: each is 400, the queue
    still holds exactly the genuine job, the genuine parked job is still listed, the rejected store
    stays within its cap."""
    settings = settings.model_copy(update={"failed_max": 50, "forensics_maxlen": 100})
    genuine_parked = worker_signed(worker_notification(trans_id="Zz99Zz"), shop)
    await failed_store.park(
        redis,
        failed_id="ipn:genuine",
        job_id="ipn:genuine",
        payload={"fields": genuine_parked},
        error=ValueError("unknown shop"),
        traceback="",
        tries=1,
        failed_max=settings.failed_max,
    )
    genuine = signed(notification(), shop)
    form = await _signed_form(redis, settings)
    async with receiver(settings) as client:
        assert (await client.post("/ipn", data=urlencode(genuine), headers=FORM)).status == 200

        async def post_copy(n: int) -> int:
            body = urlencode(form) + f"&pad{n}=" + "x" * 60_000
            response = await client.post("/ipn", data=body, headers=FORM)
            await response.read()
            return response.status

        for start in range(0, 1000, 50):
            assert set(await asyncio.gather(*(post_copy(n) for n in range(start, start + 50)))) == {400}
    assert await redis.zcard(settings.queue_name) == 1
    await stored_job(redis, genuine)
    assert [entry.id async for entry in failed_store.iter_failed(redis)] == ["ipn:genuine"]
    listed = cli_failed_list(CVCO_FAILED_MAX="50")
    assert [line.split("\t")[0] for line in listed.splitlines()] == ["ipn:genuine"]
    kept = await list_rejected(redis)
    assert len(kept) <= 100
    assert all(len(entry.body) < 2000 for entry in kept)  # the signed form, without its 60 KB of padding


async def test_unsigned_noise_around_a_notification_gives_one_job_of_signed_fields_only(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    """Padding and non-vads_ fields are neither queued nor part of the job's identity."""
    genuine = signed(notification(), shop)
    async with receiver(settings) as client:
        for n in range(20):
            noisy = {f"pad{n}": "x" * 1000, **genuine, "utm_source": str(n), "Vads_amount": "1"}
            assert (await client.post("/ipn", data=urlencode(noisy), headers=FORM)).status == 200
    assert await redis.zcard(settings.queue_name) == 1
    _, queued = await stored_job(redis, genuine)
    assert queued.fields == genuine


async def test_renamed_field_copies_of_one_signed_notification_never_evict_a_genuine_parked_one(
    settings: Settings, shop: ShopConfig, redis: Redis
) -> None:
    """A field renamed so it sorts in the same place keeps the signature valid, and the job's id is derived
    from the signature: 60 such copies are one job, parked once, and the genuine entry stays."""
    settings = settings.model_copy(update={"failed_max": 50})
    genuine = signed(worker_notification(trans_id="Yy88Yy"), shop)
    async with receiver(settings) as client:
        assert (await client.post("/ipn", data=urlencode(genuine), headers=FORM)).status == 200
        await drain(settings.model_copy(update={"shops": {}}))  # a worker without the shop parks it
        [parked] = [entry async for entry in failed_store.iter_failed(redis)]
        copy = signed(worker_notification(), shop)
        for n in range(60):
            renamed = {
                (f"vads_trans_date_{n:02}" if name == "vads_trans_date" else name): value
                for name, value in copy.items()
            }
            assert (await client.post("/ipn", data=urlencode(renamed), headers=FORM)).status == 200
        assert await redis.zcard(settings.queue_name) == 1
    await drain(settings)
    kept = [entry.id async for entry in failed_store.iter_failed(redis)]
    assert parked.id in kept
    assert len(kept) == 2


async def test_the_failed_store_is_bounded_in_bytes_and_counts_them_back_down(redis: Redis) -> None:
    """Beyond failed_max_bytes the oldest entries go; resolving every entry brings the count back to 0."""
    big = {"fields": {"vads_site_id": SHOP_ID, "vads_x": "y" * 100_000}}
    for n in range(30):
        await failed_store.park(
            redis,
            failed_id=f"ipn:{n}",
            job_id=f"ipn:{n}",
            payload={"fields": {**big["fields"], "signature": str(n), "vads_trans_id": f"t{n}"}},
            error=ValueError("x"),
            traceback="",
            tries=1,
            failed_max=1000,
            failed_max_bytes=1024 * 1024,
            now=1000.0 + n,
        )
    kept = [entry.id async for entry in failed_store.iter_failed(redis)]
    assert kept == [f"ipn:{n}" for n in range(20, 30)]
    assert int(await redis.get(failed_store.FAILED_BYTES)) <= 1024 * 1024
    for failed_id in kept:
        assert await failed_store.resolve(redis, failed_id)
    assert int(await redis.get(failed_store.FAILED_BYTES)) == 0
    assert await redis.keys(failed_store.GROUP_PREFIX + "*") == []


async def test_a_signature_group_over_its_cap_drops_its_oldest_never_the_entry_just_parked(
    redis: Redis,
) -> None:
    """Four copies of one signature: the group keeps 3; the one parked last stays even when its clock
    runs behind the others'."""
    payload = {"fields": {"vads_site_id": SHOP_ID, "vads_trans_id": "t1", "signature": "same"}}
    dropped: list[str] = []
    for n, now in enumerate((1000.0, 1001.0, 1002.0, 500.0)):
        dropped += await failed_store.park(
            redis,
            failed_id=f"ipn:{n}",
            job_id=f"ipn:{n}",
            payload=payload,
            error=ValueError("x"),
            traceback="",
            tries=1,
            failed_max=1000,
            now=now,
        )
    assert dropped == ["ipn:0"]
    assert sorted([entry.id async for entry in failed_store.iter_failed(redis)]) == [
        "ipn:1",
        "ipn:2",
        "ipn:3",
    ]
