"""Through a real load balancer: nginx (deploy/nginx/nginx.conf) in front of two receivers, two workers.

A short load run accounts for every notification; a receiver killed with `kill -9` under load loses and
duplicates nothing, because nginx re-sends what it had not answered and the platform retries the rest.
"""

from __future__ import annotations

import time

import pytest

from tests.reliability.accounting import Tally, tally, wait_for_events
from tests.reliability.conftest import scale
from tests.reliability.processes import Cluster, Service

LOAD_RATE = scale(ci=200, full=1000)
LOAD_SECONDS = scale(ci=5, full=60)
CRASH_NOTIFICATIONS = scale(ci=1000, full=5000)
CRASH_RATE = 250


def start_balanced(cluster: Cluster, receivers: int = 2, workers: int = 2) -> tuple[Service, list[Service]]:
    """Redis, `receivers` receivers behind nginx, `workers` workers; nginx and the receivers."""
    cluster.start_redis(aof=True)
    started = [cluster.start_receiver(CVCO_TRUSTED_PROXIES="127.0.0.1/32") for _ in range(receivers)]
    nginx = cluster.start_nginx([r.port or 0 for r in started])
    for _ in range(workers):
        cluster.start_worker()
    return nginx, started


def assert_each_notification_once(result: Tally, sent: int) -> None:
    assert result.events == result.unique_event_ids == result.payments == sent
    assert (result.duplicate_payments, result.queued, result.parked) == (0, 0, 0)


def _total(summary: dict[str, object]) -> dict[str, int]:
    total = summary["total"]
    assert isinstance(total, dict)
    return total


@pytest.mark.timeout(scale(ci=120, full=900))
def test_load_through_nginx_ends_in_exactly_one_event_per_notification(cluster: Cluster) -> None:
    """RATE notifications/s for SECONDS s through nginx: all delivered (with the platform's retries if a
    receiver is briefly ejected), exactly as many events, no duplicate. The rate reached is printed, not
    asserted: it measures the machine (tests/perf/load_lb.py is the benchmark), the accounting is the test."""
    nginx, _ = start_balanced(cluster)
    count = LOAD_RATE * LOAD_SECONDS
    started = time.monotonic()
    summary = cluster.simulate(
        f"http://127.0.0.1:{nginx.port}/ipn",
        *("--scenario", "cvco-full", "--count", str(count), "--rate", str(LOAD_RATE)),
        # retries outlast nginx's 10 s ejection of a receiver that timed out twice (deploy/nginx upstream)
        *("--concurrency", "200", "--retries", "10", "--retry-interval", "2"),
        timeout_s=LOAD_SECONDS * 3 + 60,
    )
    events = wait_for_events(cluster, count, timeout_s=scale(ci=60, full=600))
    drained_s = time.monotonic() - started
    result = tally(cluster)
    total = _total(summary)
    print(
        f"load via nginx: {count} at {LOAD_RATE}/s, simulator {total}, latency {summary['latency_ms']}, "
        f"send {summary['elapsed_s']} s, all events after {drained_s:.1f} s, {result.describe()}"
    )
    assert (total["sent"], total["accepted"], total["failed"]) == (count, count, 0)
    assert events == count
    assert_each_notification_once(result, count)


@pytest.mark.timeout(scale(ci=120, full=300))
def test_a_receiver_killed_under_load_loses_and_duplicates_nothing(cluster: Cluster) -> None:
    """kill -9 one of two receivers mid-run (restarted 2 s later): no delivery fails, every notification
    ends in exactly one event."""
    nginx, receivers = start_balanced(cluster)
    simulation = cluster.start_simulate(
        f"http://127.0.0.1:{nginx.port}/ipn",
        *("--scenario", "cvco-full", "--count", str(CRASH_NOTIFICATIONS), "--rate", str(CRASH_RATE)),
        *("--concurrency", "100", "--retries", "4", "--retry-interval", "1", "--timeout", "5"),
    )
    time.sleep(CRASH_NOTIFICATIONS / CRASH_RATE / 3)
    victim = receivers[0]
    victim.kill()
    time.sleep(2)
    cluster.start_receiver(victim.port, CVCO_TRUSTED_PROXIES="127.0.0.1/32")
    summary = cluster.simulate_result(simulation, timeout_s=120)
    events = wait_for_events(cluster, CRASH_NOTIFICATIONS, timeout_s=60)
    result = tally(cluster)
    total = _total(summary)
    upstream_errors = nginx.log_text().count("upstream")
    print(
        f"receiver crash: {CRASH_NOTIFICATIONS} at {CRASH_RATE}/s, simulator {total}, latency "
        f"{summary['latency_ms']}, nginx upstream errors logged {upstream_errors}, {result.describe()}"
    )
    assert total["failed"] == 0 and total["accepted"] == CRASH_NOTIFICATIONS
    assert upstream_errors > 0, "nginx never met the dead receiver: the test proved nothing"
    assert events == CRASH_NOTIFICATIONS
    assert_each_notification_once(result, CRASH_NOTIFICATIONS)
