"""`cvco-ipn demo` runs the whole system with no set-up and shows each scenario's events."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

from redis.asyncio import Redis

from core.keys import SESSIONS_KEY
from tests.conftest import TEST_REDIS_URL

ROOT = Path(__file__).resolve().parent.parent

EXPECTED_EVENTS = Counter(
    {
        ("cvco-full", "payment.accepted"): 1,
        ("cascade", "payment.accepted"): 1,
        ("cascade-refused-complement", "payment.partial"): 1,
        ("refused", "payment.refused"): 14,
        ("abandoned", "payment.abandoned"): 2,
        ("abandoned-complement", "payment.abandoned"): 1,
        ("abandoned-complement", "payment.expired"): 1,
        ("silent", "payment.expired"): 1,
        ("merch-bo-cancel", "payment.accepted"): 1,
        ("merch-bo-cancel", "payment.cancelled"): 1,
        ("capture", "payment.accepted"): 1,
        ("capture", "payment.captured"): 1,
        ("refund", "payment.accepted"): 1,
        ("refund", "payment.captured"): 1,
        ("refund", "payment.refunded"): 1,
        ("duplicates", "payment.accepted"): 1,
        ("retry", "payment.accepted"): 2,
        ("out-of-order", "payment.captured"): 1,
        ("out-of-order", "payment.cancelled"): 1,
    }
)


def _run_demo(**extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CVCO_REDIS_URL", "CVCO_SHOPS")}
    env.update(extra_env)
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "demo", "--seed", "7"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip


def _table_rows(output: str, title: str) -> list[list[str]]:
    """The body rows of the rich table printed under `title`."""
    lines = output.split(title, 1)[1].splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith(("│", "└")))
    rows = []
    for line in lines[start:]:
        if not line.startswith("│"):
            break
        rows.append([cell.strip() for cell in line.strip("│").split("│")])
    return rows


def test_demo_with_no_configuration_shows_every_scenarios_events_and_the_parked_job_then_cleans_up() -> None:
    """Embedded Redis: each scenario's exact events are printed (type, scenario, order, source), the
    unparsable notification is in the failed list, exit 0, the Redis is gone after."""
    result = _run_demo()
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "demo shop 12345678, TEST key 1122334455667788" in out
    events = _table_rows(out, "Events on cvco:events")
    assert Counter((row[1], row[0]) for row in events) == EXPECTED_EVENTS
    orders = Counter(row[2] for row in events)
    assert len(orders) == 30  # every payment but the parked one gave events
    assert orders.most_common(1)[0][1] == 3  # the refunded payment: accepted, captured, refunded
    sources = {(row[1], row[0]): row[6] for row in events}
    assert sources[("silent", "payment.expired")] == "SESSION_TIMEOUT"
    assert sources[("refund", "payment.refunded")] == "MERCH_BO"
    assert sources[("capture", "payment.captured")] == "BATCH"
    assert "RETRY" in {row[6] for row in events if row[1] == "retry"}
    (parked,) = _table_rows(out, "Failed (parked) jobs")
    assert parked[1] == "12345678" and "InvalidNotification: vads_payment_seq" in parked[3]
    assert len(parked[0]) == len("ipn:") + 64  # the whole id, as `failed show` and `replay` take it
    assert "is gone now the demo has ended" in out
    assert "every scenario gave exactly the events it should" in out
    port = int(re.search(r"redis://127\.0\.0\.1:(\d+)/0", out).group(1))  # type: ignore[union-attr]  # printed first, asserted by the matches above
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0


async def test_demo_on_a_given_redis_keeps_its_data_and_writes_to_a_run_scoped_stream(redis: Redis) -> None:
    """With CVCO_REDIS_URL set the demo uses that Redis, leaves existing keys and watched sessions alone,
    and all its events (its silent session's expiry included) go to a stream of its own that expires."""
    await redis.set("someone:else", "untouched")
    await redis.xadd("cvco:events", {"event": json.dumps({"type": "payment.accepted"})})
    await redis.zadd(SESSIONS_KEY, {"87654321:TEST:20260101:abc123": 0})  # a real session, long due
    result = _run_demo(CVCO_REDIS_URL=TEST_REDIS_URL)
    assert result.returncode == 0, result.stdout + result.stderr
    assert await redis.get("someone:else") == b"untouched"
    assert await redis.zrange(SESSIONS_KEY, 0, -1) == [b"87654321:TEST:20260101:abc123"]  # no demo sweep ran
    assert await redis.xlen("cvco:events") == 1
    stream = re.search(r"stream (cvco:demo:[0-9a-f]+:events)", result.stdout).group(1)  # type: ignore[union-attr]  # the demo prints its stream name
    assert await redis.xlen(stream) == sum(EXPECTED_EVENTS.values())
    assert 0 < await redis.ttl(stream) <= 3600
