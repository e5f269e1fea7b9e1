"""`cvco-ipn failed list|show` and `replay`, end to end with the real worker on the test Redis.

The CLI runs in-process (`cli.main.main`) in a thread, because it starts its own event loop.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from arq.connections import ArqRedis

from cli.main import main
from schemas.job import PROCESS_NOTIFICATION, notification_job_id
from schemas.settings import Settings, ShopConfig
from tests.conftest import SHOP_ID, TEST_REDIS_URL
from tests.notifications import drain, notification, queued
from workers import failed_store


@pytest.fixture
def pool(pool: ArqRedis, monkeypatch: pytest.MonkeyPatch) -> ArqRedis:
    """The shared arq client; the CLI's environment points at the same database."""
    monkeypatch.setenv("CVCO_REDIS_URL", TEST_REDIS_URL)
    return pool


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return status, out, err


async def park_unknown_shop(pool: ArqRedis, settings: Settings, shop: ShopConfig) -> str:
    """Queue a signed notification and run a worker whose settings lack its shop: it gets parked."""
    job = queued(notification("AUTHORISED"), shop)
    job_id = notification_job_id(job.fields)
    await pool.enqueue_job(
        PROCESS_NOTIFICATION, job.model_dump(mode="json"), _job_id=job_id, _queue_name=settings.queue_name
    )
    await drain(settings.model_copy(update={"shops": {}}))
    return job_id


async def test_permanent_failure_is_listed_then_replayed_once_fixed(
    pool: ArqRedis, settings: Settings, shop: ShopConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    """Unknown shop: parked and listed; once the shop is configured, replay publishes and empties the list."""
    failed_id = await park_unknown_shop(pool, settings, shop)
    assert await pool.xlen(settings.stream) == 0

    status, out, _ = await cli(capsys, "failed", "list")
    assert status == 0
    (line,) = out.splitlines()
    assert line.split("\t")[0] == failed_id
    assert line.split("\t")[2:] == [SHOP_ID, "order-42", "UnknownShop"]

    status, out, _ = await cli(capsys, "failed", "list", "--json")
    (entry,) = json.loads(out)
    assert (entry["id"], entry["shop_id"], entry["error_class"]) == (failed_id, SHOP_ID, "UnknownShop")

    status, out, _ = await cli(capsys, "replay", failed_id, "--dry-run")
    assert status == 0 and "would queue " + failed_id in out
    assert await pool.zcard(settings.queue_name) == 0

    status, out, _ = await cli(capsys, "replay", failed_id)
    assert status == 0 and "queued " + failed_id in out
    status, out, _ = await cli(capsys, "replay", failed_id)
    assert status == 0 and "already queued " + failed_id in out
    assert await pool.zcard(settings.queue_name) == 1

    await drain(settings)
    assert await pool.xlen(settings.stream) == 1
    status, out, _ = await cli(capsys, "failed", "list")
    assert (status, out) == (0, "")
    assert await failed_store.count(pool) == 0


async def test_replaying_twice_publishes_one_event(
    pool: ArqRedis, settings: Settings, shop: ShopConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two replay jobs of one parked notification (say two operators): the event is published once."""
    failed_id = await park_unknown_shop(pool, settings, shop)
    status, _, _ = await cli(capsys, "replay", "--all")
    assert status == 0
    entry = await failed_store.get(pool, failed_id)
    assert entry is not None
    second = await pool.enqueue_job(
        PROCESS_NOTIFICATION,
        json.loads(entry.payload),
        _job_id=f"replay:{failed_id}:99",
        _queue_name=settings.queue_name,
    )
    assert second is not None
    await drain(settings)
    assert await pool.xlen(settings.stream) == 1
    assert await failed_store.count(pool) == 0
    status, _, err = await cli(capsys, "replay", failed_id)
    assert status == 2 and "not in the failed list" in err


async def test_show_prints_the_raw_notification_and_the_whole_error(
    pool: ArqRedis, settings: Settings, shop: ShopConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    """`failed show` gives the fields as received, the error message and its traceback."""
    failed_id = await park_unknown_shop(pool, settings, shop)
    status, out, _ = await cli(capsys, "failed", "show", failed_id)
    assert status == 0
    assert "UnknownShop: vads_site_id '12345678' is not a configured shop" in out
    assert "Traceback (most recent call last)" in out
    assert '"vads_order_id": "order-42"' in out
    assert f"cvco-ipn replay {failed_id}" in out


async def test_filters_select_by_shop_error_and_time(
    pool: ArqRedis, settings: Settings, shop: ShopConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    """--shop, --error (class substring, any case) and --since keep only the matching entries."""
    failed_id = await park_unknown_shop(pool, settings, shop)
    for argv, expected in (
        (("--shop", SHOP_ID), 1),
        (("--shop", "87654321"), 0),
        (("--error", "unknownshop"), 1),
        (("--error", "Timeout"), 0),
        (("--since", "1h"), 1),
        (("--since", "2999-01-01"), 0),
    ):
        status, out, _ = await cli(capsys, "failed", "list", "--json", *argv)
        assert status == 0
        assert [entry["id"] for entry in json.loads(out)] == [failed_id] * expected, argv
    status, out, _ = await cli(capsys, "replay", "--all", "--dry-run", "--shop", "87654321")
    assert status == 0 and "would queue 0 of 0" in out


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (("failed", "show", "ipn:nope"), "no parked or discarded job with id 'ipn:nope'"),
        (("replay",), "name the jobs to replay"),
        (("replay", "a", "--all"), "name the jobs to replay"),
        (("failed", "list", "--since", "yesterday"), "--since 'yesterday'"),
    ],
)
async def test_bad_arguments_exit_2_with_one_line(
    pool: ArqRedis, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], reason: str
) -> None:
    """Unknown id, no target, both targets, unreadable --since: exit 2 and a one-line reason."""
    status, out, err = await cli(capsys, *argv)
    assert status == 2
    assert reason in err
    assert len(err.strip().splitlines()) == 1
