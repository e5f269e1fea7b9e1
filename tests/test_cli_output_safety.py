"""Platform text reaches an operator literally: no markup, no hyperlink, no terminal sequence, no forged line.

Hostile values go where the platform's fields land (a parked job's notification, an event on the stream);
the real CLI prints them on a pipe and on a terminal. A bounded fuzz test then puts arbitrary Unicode and
control characters in every echoed field of every output path.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from cli.main import main
from cli.text import is_safe, json_text, literal
from core import keys
from tests.cli_process import cli_env, raw_controls, run_cli
from tests.conftest import SHOP_ID, TEST_REDIS_URL
from workers import failed_store

STREAM = "cvco:test-events"
HOSTILE = {
    "markup": "CMD-[/]",
    "link": "[link=https://evil.example/]clic[/link]",
    "escape": "\x1b]0;pwned\x07\x1b[2J\x1b[31mred",
    "row": "A\nipn:forged\t2024-01-01T00:00:00+00:00\t12345678\tX\tUnknownShop",
    "c1": "x\x9b2Jy\x7f",
    "bidi": "abc\u202edcba",
}


def event(order_id: str, **more: Any) -> dict[str, Any]:
    return {
        "event_id": "e-" + order_id,
        "type": "payment.accepted",
        "shop_id": SHOP_ID,
        "mode": "TEST",
        "order_id": order_id,
        "trans_id": "Ab12Cd",
        "status": "AUTHORISED",
        "amount": 5000,
        "paid_amount": 5000,
        "cvco_amount": 5000,
        "auth_result": {"code": "0", "message": "ok"},
        "flags": [],
        "received_at": "2024-05-01T12:00:00+00:00",
        **more,
    }


async def park(redis: Redis, order_id: str, failed_id: str = "ipn:" + "ab" * 32) -> str:
    fields = {"vads_site_id": SHOP_ID, "vads_order_id": order_id, "vads_trans_id": order_id}
    await failed_store.park(
        redis,
        failed_id=failed_id,
        job_id=failed_id,
        payload={"fields": fields},
        error=ValueError(f"bad value {order_id}"),
        traceback=f"Traceback (most recent call last):\nValueError: bad value {order_id}\n",
        tries=1,
        failed_max=100,
    )
    return failed_id


def assert_safe(text: str) -> None:
    assert raw_controls(text) == []
    assert "\x1b]8;" not in text  # no hyperlink (OSC 8)
    assert "\u202e" not in text


@pytest.mark.parametrize("terminal", [False, True], ids=["pipe", "terminal"])
async def test_failed_list_and_show_print_hostile_fields_literally(redis: Redis, terminal: bool) -> None:
    """Markup, links, ESC, C1, bidi and a newline in an order id: printed as text; one row, no forged line."""
    for n, value in enumerate(HOSTILE.values()):
        await park(redis, value, failed_id=f"ipn:{n:064x}")
    listing = run_cli("failed", "list", terminal=terminal)
    assert listing.status == 0, listing.err
    assert_safe(listing.out)
    for value in HOSTILE.values():
        assert literal(value) in listing.out
    if not terminal:
        rows = listing.out.splitlines()
        assert len(rows) == len(HOSTILE)
        assert all(len(line.split("\t")) == 5 for line in rows)
    show = run_cli("failed", "show", f"ipn:{3:064x}", terminal=terminal)
    assert show.status == 0, show.err
    assert_safe(show.out)
    assert not any(line.startswith("ipn:forged") for line in show.out.splitlines())
    as_json = run_cli("failed", "list", "--json")
    assert_safe(as_json.out)
    assert {entry["order_id"] for entry in json.loads(as_json.out)} == set(HOSTILE.values())


@pytest.mark.parametrize("terminal", [False, True], ids=["pipe", "terminal"])
async def test_events_tail_prints_hostile_fields_literally(redis: Redis, terminal: bool) -> None:
    """`CMD-[/]` used to crash the table; every hostile order id is shown as text, JSON stays exact."""
    for value in HOSTILE.values():
        await redis.xadd(STREAM, {"event": json.dumps(event(value))})
    await redis.xadd(STREAM, {"event": '{"order_id": "lone \\ud800 surrogate", "type": "payment.accepted"}'})
    env = cli_env(CVCO_STREAM=STREAM)
    tail = run_cli("events", "tail", env=env, terminal=terminal)
    assert tail.status == 0, tail.err
    assert_safe(tail.out)
    for value in HOSTILE.values():
        assert literal(value) in tail.out
    assert "lone \\ud800 surrogate" in tail.out
    lines = run_cli("events", "tail", "--json", env=env, terminal=terminal)
    assert_safe(lines.out)
    decoded = [json.loads(line) for line in lines.out.splitlines()]
    assert [item["order_id"] for item in decoded[:-1]] == list(HOSTILE.values())


async def test_group_read_acknowledges_only_what_it_printed(redis: Redis) -> None:
    """Entries handed to a consumer that died unacknowledged are printed on its next read, then acked; an
    entry holding no readable event is reported and stays pending."""
    for value in HOSTILE.values():
        await redis.xadd(STREAM, {"event": json.dumps(event(value))})
    unreadable = await redis.xadd(STREAM, {"event": "{not json"})
    await redis.xgroup_create(STREAM, "billing", id="0")
    taken = await redis.xreadgroup("billing", "c1", {STREAM: ">"}, count=100)  # then the consumer dies
    assert len(taken[0][1]) == len(HOSTILE) + 1
    ran = run_cli("events", "tail", "--group", "billing", "--consumer", "c1", env=cli_env(CVCO_STREAM=STREAM))
    assert ran.status == 0, ran.err
    assert len(ran.out.splitlines()) == len(HOSTILE)
    assert f"stream entry {unreadable.decode()} holds no readable event" in ran.err
    pending = await redis.xpending_range(STREAM, "billing", min="-", max="+", count=100)
    assert [entry["message_id"] for entry in pending] == [unreadable]


def test_json_text_escapes_what_json_dumps_leaves_raw() -> None:
    """DEL, C1, U+2028, bidi and lone surrogates come out as \\u escapes and decode back to the value."""
    value = "a\x7fb\x85c\u2028d\u202ee\ud800f\n"
    text = json_text({"v": value})
    assert is_safe(text)
    assert json.loads(text) == {"v": value}


# --- fuzzing ------------------------------------------------------------------------------------------

field_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
"""Any character Redis can store as UTF-8 text (a lone surrogate only reaches the CLI inside JSON)."""
any_text = st.text(
    st.one_of(
        st.characters(exclude_categories=[]), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
    ),
    max_size=40,
)
"""Any character at all, lone surrogates included: events reach the CLI as JSON."""


@pytest.fixture
def sync_redis(monkeypatch: pytest.MonkeyPatch) -> Iterator[SyncRedis]:
    monkeypatch.setenv("CVCO_REDIS_URL", TEST_REDIS_URL)
    monkeypatch.setenv("CVCO_STREAM", STREAM)
    client = SyncRedis.from_url(TEST_REDIS_URL)
    yield client
    client.flushdb()
    client.close()


def cli_in_process(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *argv: str) -> str:
    """The CLI's output for argv, on a pipe and (rich's tables and lines) as on a terminal."""
    outputs = []
    for terminal in (False, True):
        capsys.readouterr()
        monkeypatch.setattr(sys.stdout, "isatty", lambda terminal=terminal: terminal)
        assert main(list(argv)) == 0
        outputs.append(capsys.readouterr().out)
    return "".join(outputs)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shop=field_text,
    order=field_text,
    trans=field_text,
    error=field_text,
    event_fields=st.fixed_dictionaries(
        {
            key: any_text
            for key in ("type", "shop_id", "mode", "order_id", "trans_id", "status", "received_at")
        }
    ),
    auth=any_text,
    flag=any_text,
)
def test_every_output_path_survives_arbitrary_text(
    sync_redis: SyncRedis,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    shop: str,
    order: str,
    trans: str,
    error: str,
    event_fields: dict[str, str],
    auth: str,
    flag: str,
) -> None:
    """failed list/show/--json, replay --dry-run, events tail (table, lines, JSON, group): no crash, no raw
    control character, and every value readable in the output as `literal` shows it."""
    sync_redis.flushdb()
    failed_id = "ipn:" + "cd" * 32
    now = repr(time.time())
    sync_redis.hset(
        keys.FAILED_PREFIX + failed_id,
        mapping={
            "id": failed_id,
            "payload": json.dumps({"fields": {"vads_order_id": order, "vads_site_id": shop}}),
            "error_class": error,
            "error_message": error,
            "traceback": error,
            "tries": "1",
            "parks": "1",
            "first_failed_at": now,
            "last_failed_at": now,
            "shop_id": shop,
            "order_id": order,
            "trans_id": trans,
            "trans_uuid": trans,
            "job_id": failed_id,
        },
    )
    sync_redis.zadd(keys.FAILED_INDEX, {failed_id: float(now)})
    body = {**event(order), **event_fields, "auth_result": {"code": auth, "message": auth}, "flags": [flag]}
    sync_redis.xadd(STREAM, {"event": json.dumps(body)})
    outputs = [
        cli_in_process(capsys, monkeypatch, "failed", "list"),
        cli_in_process(capsys, monkeypatch, "failed", "list", "--json"),
        cli_in_process(capsys, monkeypatch, "failed", "show", failed_id),
        cli_in_process(capsys, monkeypatch, "failed", "show", failed_id, "--json"),
        cli_in_process(capsys, monkeypatch, "replay", failed_id, "--dry-run"),
        cli_in_process(capsys, monkeypatch, "events", "tail"),
        cli_in_process(capsys, monkeypatch, "events", "tail", "--json"),
        cli_in_process(capsys, monkeypatch, "events", "tail", "--group", "g", "--count", "5"),
    ]
    for output in outputs:
        assert raw_controls(output) == []
        assert is_safe(output.replace("\n", "").replace("\t", "").replace("\x1b", ""))
    assert literal(order) in outputs[0]
    assert json.loads(outputs[1].split("\n]\n")[0] + "\n]")[0]["order_id"] == (order or None)
    assert json.loads(outputs[6].splitlines()[0]) == body
