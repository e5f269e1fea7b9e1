"""Redis killed and restarted (AOF, appendfsync always) while the simulator is sending notifications.

While Redis is down the receiver answers 503 at once (nothing claimed); the platform's retries deliver
the rest once it is back; every notification answered 200 survives the crash and ends in one event.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import SHOP_ID
from tests.reliability.accounting import tally, wait_for_events
from tests.reliability.conftest import scale
from tests.reliability.notifications import accepted_payment, form_body
from tests.reliability.processes import Cluster, Service, http_status, shop_config

NOTIFICATIONS = scale(ci=1000, full=5000)
RATE = 200
DOWN_S = 3.0


def _post_status(url: str, body: bytes) -> tuple[int | None, float]:
    """Status of one notification POST and how long the answer took."""
    started = time.monotonic()
    request = urllib.request.Request(  # noqa: S310  # loopback URL built by the test
        url, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310  # loopback URL
            status: int | None = response.status
    except urllib.error.HTTPError as e:
        status = e.code
    return status, time.monotonic() - started


def _supervise(cluster: Cluster, workers: list[Service]) -> list[str]:
    """Restart any worker that exited, as systemd or Kubernetes would; the last log line of each."""
    last_words = []
    for index, worker in enumerate(workers):
        if not worker.running:
            last_words.append((worker.log_text().strip().splitlines() or [""])[-1][:300])
            workers[index] = cluster.start_worker()
    return last_words


@pytest.mark.timeout(scale(ci=120, full=300))
def test_a_redis_crash_during_intake_loses_no_acknowledged_notification(cluster: Cluster) -> None:
    """kill -9 Redis mid-traffic, restart it from its AOF after 3 s: 503s fast meanwhile, then every
    notification is delivered by the platform's retries and ends in exactly one event."""
    redis = cluster.start_redis(aof=True)
    receiver = cluster.start_receiver()
    workers = [cluster.start_worker()]
    url = f"http://127.0.0.1:{receiver.port}/ipn"
    simulation = cluster.start_simulate(
        url,
        *("--scenario", "cvco-full", "--count", str(NOTIFICATIONS), "--rate", str(RATE)),
        *("--retries", "8", "--retry-interval", "1", "--timeout", "5"),
    )
    time.sleep(NOTIFICATIONS / RATE / 3)
    redis.kill()
    probe = accepted_payment(10**6, SHOP_ID, shop_config(), salt="probe")
    status_while_down, answer_s = _post_status(url, form_body(probe))
    ready_while_down = http_status(f"http://127.0.0.1:{receiver.port}/readyz", timeout_s=5)
    time.sleep(DOWN_S)
    cluster.start_redis(aof=True)
    summary = cluster.simulate_result(simulation, timeout_s=120)
    restarted = _supervise(cluster, workers)
    events = wait_for_events(cluster, NOTIFICATIONS, timeout_s=60)
    result = tally(cluster)
    print(
        f"redis restart: {NOTIFICATIONS} at {RATE}/s, down {DOWN_S:g} s, 503 in {answer_s * 1000:.0f} ms, "
        f"workers restarted {restarted}, simulator {summary['total']} p50/p99 {summary['latency_ms']}, "
        f"{result.describe()}"
    )
    assert (status_while_down, ready_while_down) == (503, 503)
    assert answer_s < 2.5
    total = summary["total"]
    assert isinstance(total, dict)
    assert total["failed"] == 0 and total["accepted"] == NOTIFICATIONS
    assert total["retried"] > 0, "the outage hit no delivery: the test proved nothing"
    assert events == NOTIFICATIONS
    assert result.events == result.unique_event_ids == result.payments == NOTIFICATIONS
    assert (result.duplicate_payments, result.queued, result.parked) == (0, 0, 0)
