"""`cvco-ipn replay --wait`: the real CLI waits on a real worker process and reports each job's outcome."""

from __future__ import annotations

import json

from arq.connections import ArqRedis

from schemas.settings import Settings, ShopConfig
from tests.cli_process import SHOPS_JSON, cli_env, interrupt, run_cli, start_cli
from tests.notifications import cascade, drain, enqueue_notification, leg, notification, queued
from workers import failed_store


async def park_two(pool: ArqRedis, settings: Settings, shop: ShopConfig) -> tuple[str, str]:
    """One job parked for an unknown shop (fixable) and one unparsable (it fails again however replayed)."""
    fixable = await enqueue_notification(pool, settings, queued(notification("AUTHORISED"), shop))
    broken = cascade([leg(1, "CVCO", 10000, "AUTHORISED", "d" * 32)], source="BO")
    broken["vads_payment_seq"] = broken["vads_payment_seq"][:-5]
    unparsable = await enqueue_notification(pool, settings, queued(broken, shop))
    await drain(settings.model_copy(update={"shops": {}}))
    assert await failed_store.count(pool) == 2
    return fixable, unparsable


async def test_replay_wait_prints_each_outcome_and_exits_1_when_one_is_parked_again(
    pool: ArqRedis, settings: Settings, shop: ShopConfig
) -> None:
    """With a worker running, the fixed job is published and leaves the list; the unparsable one is parked
    again with its error; the summary counts both; exit 1. A second replay of the published one cannot
    happen: it is gone from the list."""
    fixable, unparsable = await park_two(pool, settings, shop)
    env = cli_env(CVCO_SHOPS=SHOPS_JSON, CVCO_STREAM=settings.stream)
    worker = start_cli("worker", env=env)
    try:
        ran = run_cli("replay", "--all", "--wait", "--timeout", "60", env=env)
    finally:
        interrupt(worker)
    assert ran.status == 1, ran.out + ran.err
    lines = ran.out.splitlines()
    assert any(line.startswith(f"published {fixable} (shop") for line in lines), ran.out
    (again,) = [line for line in lines if line.startswith(f"parked again {unparsable}")]
    assert "InvalidNotification: vads_payment_seq" in again
    assert lines[-1] == "replayed 2: 1 published, 1 parked again"
    assert [entry.id async for entry in failed_store.iter_failed(pool)] == [unparsable]
    assert await pool.xlen(settings.stream) == 1


async def test_replay_wait_without_a_worker_stops_at_the_timeout(
    pool: ArqRedis, settings: Settings, shop: ShopConfig
) -> None:
    """No worker: each job is reported not finished after --timeout, exit 1; the job stays queued for later.
    On a terminal the bulk replay shows its progress and the same summary."""
    fixable, unparsable = await park_two(pool, settings, shop)
    ran = run_cli("replay", fixable[:16], "--wait", "--timeout", "0.5")
    assert ran.status == 1, ran.out + ran.err
    assert ran.out.splitlines()[-2].startswith(f"not finished after 0.5 s {fixable}")
    assert ran.out.splitlines()[-1] == "replayed 1: 1 not finished"
    assert await pool.zcard(settings.queue_name) == 1
    shown = run_cli("replay", "--all", "--wait", "--timeout", "0.5", terminal=True)
    assert shown.status == 1
    assert "waiting for the workers" in shown.out or "queueing" in shown.out
    assert "replayed 2: 2 not finished" in shown.out


async def test_replay_wait_bad_arguments_exit_2(pool: ArqRedis, settings: Settings, shop: ShopConfig) -> None:
    """--wait with --dry-run, a timeout of 0, a timeout that is not a number: exit 2 and one line."""
    fixable, _ = await park_two(pool, settings, shop)
    for argv, reason in (
        (("replay", fixable, "--wait", "--dry-run"), "--wait has nothing to wait for"),
        (("replay", fixable, "--wait", "--timeout", "0"), "--timeout must be above 0"),
        (("replay", fixable, "--wait", "--timeout", "soon"), "argument --timeout: invalid float value"),
    ):
        ran = run_cli(*argv)
        assert ran.status == 2 and len(ran.err_lines) == 1 and reason in ran.err, (argv, ran.err)
    assert json.loads(run_cli("failed", "list", "--json").out)[0]["id"] in {fixable, _}
