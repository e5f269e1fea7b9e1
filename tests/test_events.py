"""`cvco-ipn events tail`: the table, JSON lines, and a consumer group that acknowledges what it printed."""

from __future__ import annotations

import asyncio
import json

import pytest
from redis.asyncio import Redis

from cli.main import main
from schemas.event import PaymentEvent
from schemas.settings import Settings, ShopConfig
from tests.conftest import TEST_REDIS_URL
from tests.notifications import notification, queued
from workers.payment_updates import handle_notification


@pytest.fixture
async def three_events(
    redis: Redis, settings: Settings, shop: ShopConfig, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """A stream holding pending, accepted and captured events of one payment; the CLI pointed at it."""
    for status in ("WAITING_AUTHORISATION", "AUTHORISED", "CAPTURED"):
        await handle_notification(redis, settings, queued(notification(status), shop))
    monkeypatch.setenv("CVCO_REDIS_URL", TEST_REDIS_URL)
    monkeypatch.setenv("CVCO_STREAM", settings.stream)
    return settings


async def test_tail_json_prints_the_last_events_as_valid_event_objects(
    three_events: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json --count 2: the two latest events, oldest first, each a valid PaymentEvent."""
    assert await asyncio.to_thread(main, ["events", "tail", "--json", "--count", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    events = [PaymentEvent.model_validate(json.loads(line)) for line in lines]
    assert [event.type for event in events] == ["payment.accepted", "payment.captured"]


async def test_tail_prints_a_table_with_type_order_and_amounts(
    three_events: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --json: one table row per event with its type, order and euro amounts."""
    assert await asyncio.to_thread(main, ["events", "tail"]) == 0
    out = capsys.readouterr().out
    assert out.count("payment.") == 3 and "order-42" in out and "50.00" in out


async def test_a_consumer_group_reads_each_event_once_and_acknowledges_it(
    three_events: Settings, redis: Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    """--group: the first read gets everything and XACKs it; a second read of the group gets nothing."""
    argv = ["events", "tail", "--json", "--group", "billing", "--consumer", "c1"]
    assert await asyncio.to_thread(main, argv) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    pending = await redis.xpending(three_events.stream, "billing")
    assert pending["pending"] == 0
    assert await asyncio.to_thread(main, argv) == 0
    assert capsys.readouterr().out == ""


def test_a_count_below_one_exits_2() -> None:
    """A nonsensical --count is a bad flag: exit 2."""
    assert main(["events", "tail", "--count", "0"]) == 2
