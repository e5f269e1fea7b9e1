"""A primary `kill -9`'d under load behind Sentinel, with `CVCO_REDIS_MIN_REPLICAS=1`.

The receiver and the worker find the primary through three Sentinels and are never restarted: the
receiver answers 503 while there is no primary (or no replica to acknowledge), the platform resends
every non-200, the worker reconnects to the promoted replica, and the jobs it held come back. Every
notification answered 200 was on the replica before its 200, so each ends in exactly one event on the
new primary.
"""

from __future__ import annotations

import time

import pytest

from tests.reliability.accounting import tally, wait_for_events
from tests.reliability.conftest import scale
from tests.reliability.processes import Cluster, wait_until
from tests.reliability.replicated import replication_field, start_replicated

NOTIFICATIONS = scale(ci=900, full=5000)
RATE = 150


@pytest.mark.slow
@pytest.mark.timeout(scale(ci=120, full=300))
def test_a_primary_killed_under_load_loses_no_acknowledged_notification(cluster: Cluster) -> None:
    redis = start_replicated(cluster, replicas=1, sentinels=3)
    replica = redis.replicas[0]
    cluster.settings_env.update(redis.sentinels_env, CVCO_REDIS_MIN_REPLICAS="1")
    receiver = cluster.start_receiver()
    worker = cluster.start_worker()
    url = f"http://127.0.0.1:{receiver.port}/ipn"
    simulation = cluster.start_simulate(
        url,
        *("--scenario", "cvco-full", "--count", str(NOTIFICATIONS), "--rate", str(RATE)),
        *("--retries", "10", "--retry-interval", "2", "--timeout", "5"),
    )
    time.sleep(NOTIFICATIONS / RATE / 3)
    assert replication_field(replica.port or 0, "role") == "slave"
    redis.primary.kill()
    killed_at = time.monotonic()
    wait_until(
        lambda: redis.primary_port_per_sentinels() == replica.port, 30, "Sentinel promoted the replica"
    )
    failover_s = time.monotonic() - killed_at
    # its supervisor restarts the dead node (empty: no persistence), as a replica of the new primary
    redis.node("old-primary", redis.primary.port or 0, "--replicaof", "127.0.0.1", str(replica.port))
    summary = cluster.simulate_result(simulation, timeout_s=90)
    cluster.redis_port = replica.port
    events = wait_for_events(cluster, NOTIFICATIONS, timeout_s=60)
    # redeliveries of notifications already applied may still wait out their retry backoff
    wait_until(lambda: tally(cluster).queued == 0, 60, "the queue drained")
    result = tally(cluster)
    print(
        f"sentinel failover: {NOTIFICATIONS} at {RATE}/s, promoted in {failover_s:.1f} s, simulator "
        f"{summary['total']}, {result.describe()}"
    )
    total = summary["total"]
    assert isinstance(total, dict)
    assert total["failed"] == 0 and total["accepted"] == NOTIFICATIONS
    assert total["retried"] > 0, "the failover hit no delivery: the test proved nothing"
    assert events == NOTIFICATIONS
    assert result.events == result.unique_event_ids == result.payments == NOTIFICATIONS
    assert (result.duplicate_payments, result.queued, result.parked) == (0, 0, 0)
    assert receiver.running and worker.running
    assert "request_failed" not in receiver.log_text()
