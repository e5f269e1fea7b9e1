"""`cvco-ipn events tail` through the real CLI: columns, filters, --follow lines, usage errors, Redis down."""

from __future__ import annotations

import json
import select
import subprocess
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from schemas.settings import Settings, ShopConfig
from tests.cli_process import cli_env, interrupt, run_cli, start_cli
from tests.conftest import SHOP_ID, free_port
from tests.notifications import notification, queued
from workers.payment_updates import handle_notification

OTHER_SHOP = "87654321"


def other_event(order_id: str, **more: object) -> Any:
    body = {
        "type": "payment.refused",
        "shop_id": OTHER_SHOP,
        "mode": "PRODUCTION",
        "order_id": order_id,
        **more,
    }
    return {"event": json.dumps(body), "type": "payment.refused", "shop_id": OTHER_SHOP}


@pytest.fixture
async def events(redis: Redis, settings: Settings, shop: ShopConfig) -> dict[str, str]:
    """An old refused event of another shop, then accepted and captured events of the test shop."""
    await redis.xadd(settings.stream, other_event("old-1"), id="1000-0")
    for status in ("AUTHORISED", "CAPTURED"):
        await handle_notification(redis, settings, queued(notification(status), shop))
    return cli_env(CVCO_STREAM=settings.stream)


def column(out: str, n: int) -> list[str]:
    return [line.split("\t")[n] for line in out.splitlines()]


async def test_lines_show_shop_and_mode_and_filters_keep_what_matches(events: dict[str, str]) -> None:
    """On a pipe: one tab-separated line per event with shop and mode; each filter keeps its events."""
    ran = run_cli("events", "tail", env=events)
    assert ran.status == 0, ran.err
    assert column(ran.out, 2) == [OTHER_SHOP, SHOP_ID, SHOP_ID]
    assert column(ran.out, 3) == ["PRODUCTION", "TEST", "TEST"]
    for argv, types in (
        (("--shop", SHOP_ID), ["payment.accepted", "payment.captured"]),
        (("--type", "payment.refused"), ["payment.refused"]),
        (("--order", "order-42"), ["payment.accepted", "payment.captured"]),
        (("--order", "old-1", "--shop", OTHER_SHOP), ["payment.refused"]),
        (("--since", "1h"), ["payment.accepted", "payment.captured"]),
        (("--since", "1970-01-01T00:00:00"), ["payment.refused", "payment.accepted", "payment.captured"]),
        (("--shop", SHOP_ID, "--count", "1"), ["payment.captured"]),
    ):
        ran = run_cli("events", "tail", *argv, env=events)
        assert ran.status == 0 and column(ran.out, 1) == types, (argv, ran.out, ran.err)
    table = run_cli("events", "tail", env=events, terminal=True)
    assert "shop" in table.out and "mode" in table.out and "PRODUCTION" in table.out


def read_lines(process: subprocess.Popen[bytes], n: int, timeout_s: float = 30) -> list[str]:
    """The next n lines the process writes on stdout (waiting on the pipe, never on the clock)."""
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while len(lines) < n:
        ready, _, _ = select.select([process.stdout], [], [], max(deadline - time.monotonic(), 0))
        if not ready:
            process.kill()
            _, err = process.communicate()
            raise AssertionError(f"only {lines} after {timeout_s} s; stderr {err!r}")
        lines.append(process.stdout.readline().decode().rstrip("\n"))
    return lines


async def test_follow_prints_one_line_per_new_event_through_the_filters(
    events: dict[str, str], redis: Redis, settings: Settings
) -> None:
    """--follow --shop: the latest matching event, then one line per new matching event (never a table);
    Ctrl-C ends it with exit 0 and nothing on stderr."""
    process = start_cli("events", "tail", "--follow", "--count", "1", "--shop", OTHER_SHOP, env=events)
    try:
        (first,) = read_lines(process, 1)
        assert first.split("\t")[4] == "old-1"
        await redis.xadd(
            settings.stream, {"event": json.dumps({"type": "payment.accepted", "shop_id": SHOP_ID})}
        )
        for order in ("new-1", "new-2"):
            await redis.xadd(settings.stream, other_event(order))
        assert [line.split("\t")[4] for line in read_lines(process, 2)] == ["new-1", "new-2"]
    finally:
        ran = interrupt(process)
    assert (ran.status, ran.err) == (0, "")


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (("--consumer", "c1"), "--consumer names a consumer of a --group"),
        (("--group", "g", "--shop", SHOP_ID), "cannot go with --group"),
        (("--since", "yesterday"), "--since 'yesterday'"),
        (("--type", "payment.paid"), "argument --type: invalid choice"),
        (("--count", "0"), "--count must be at least 1"),
    ],
)
def test_bad_flags_exit_2_with_one_line(argv: tuple[str, ...], reason: str) -> None:
    """Each refused combination: exit 2, one line on stderr, nothing read."""
    ran = run_cli("events", "tail", *argv)
    assert ran.status == 2 and len(ran.err_lines) == 1 and reason in ran.err, ran.err


@pytest.mark.parametrize(
    "argv",
    [
        ("events", "tail"),
        ("events", "tail", "--group", "g"),
        ("failed", "list"),
        ("failed", "show", "ipn:x"),
        ("failed", "discard", "ipn:x", "--reason", "r"),
        ("replay", "--all"),
    ],
)
def test_redis_down_is_one_line_naming_it(argv: tuple[str, ...]) -> None:
    """Nothing listening at CVCO_REDIS_URL: exit 1 and one line saying Redis cannot be reached, where."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    ran = run_cli(*argv, env=cli_env(CVCO_REDIS_URL=url))
    assert ran.status == 1
    assert ran.err_lines == [ran.err.strip()] and f"cannot reach Redis at {url}" in ran.err, ran.err
