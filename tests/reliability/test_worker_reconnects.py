"""A worker outlives a Redis restart: it reconnects by itself, and SIGTERM still stops it at once."""

from __future__ import annotations

import time
import urllib.request

import pytest

from tests.conftest import SHOP_ID
from tests.reliability.accounting import wait_for_events
from tests.reliability.notifications import accepted_payment, form_body
from tests.reliability.processes import Cluster, shop_config, wait_until


def _post(url: str, index: int) -> int:
    request = urllib.request.Request(  # noqa: S310  # loopback URL built by the test
        url,
        data=form_body(accepted_payment(index, SHOP_ID, shop_config(), salt="reconnect")),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310  # loopback URL
        status: int = response.status
        return status


@pytest.mark.timeout(90)
def test_a_worker_reconnects_after_redis_restarts_and_processes_new_notifications(cluster: Cluster) -> None:
    """Redis killed under a running worker and started again: the same worker process, never restarted
    by anyone, publishes the event of a notification received after Redis came back."""
    redis = cluster.start_redis()
    receiver = cluster.start_receiver()
    worker = cluster.start_worker()
    url = f"http://127.0.0.1:{receiver.port}/ipn"
    assert _post(url, 1) == 200
    assert wait_for_events(cluster, 1, timeout_s=20) == 1

    redis.kill()
    wait_until(lambda: "worker lost Redis" in worker.log_text(), 20, "the worker to notice Redis is gone")
    time.sleep(1)
    cluster.start_redis(port=redis.port)

    cluster.wait_ready(receiver)
    assert _post(url, 2) == 200
    assert wait_for_events(cluster, 1, timeout_s=40) == 1  # a fresh Redis (no AOF): only the new event
    assert worker.running, worker.log_text()[-2000:]


@pytest.mark.timeout(60)
def test_sigterm_stops_a_worker_waiting_to_reconnect(cluster: Cluster) -> None:
    """While a worker pauses before reconnecting, SIGTERM ends it promptly with status 0."""
    redis = cluster.start_redis()
    worker = cluster.start_worker()
    wait_until(lambda: "worker_started" in worker.log_text(), 20, "the worker to start")
    redis.kill()
    wait_until(lambda: "worker lost Redis" in worker.log_text(), 20, "the worker to notice Redis is gone")
    started = time.monotonic()
    assert worker.stop(grace_s=10) == 0
    assert time.monotonic() - started < 5
