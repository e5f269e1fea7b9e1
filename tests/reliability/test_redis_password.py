"""The Redis password never appears in a log line: receiver and worker on a Redis with an ACL user, through
normal traffic, then Redis killed (503s, a worker losing its connection, reconnect errors) and back."""

from __future__ import annotations

import time
from typing import cast

import pytest
from redis import Redis
from redis.exceptions import RedisError

from tests.conftest import free_port
from tests.reliability.accounting import STREAM
from tests.reliability.processes import Cluster, http_status, wait_until
from tests.reliability.replicated import start_node

PASSWORD = "Pw-only-in-the-URL-7f3a"  # the test's own throw-away server
USER_ARGS = ("--user", "default", "off", "--user", "cvco", "on", f">{PASSWORD}", "~*", "&*", "+@all")
NOTIFICATIONS = 50


def _client(port: int) -> Redis:
    return Redis(port=port, username="cvco", password=PASSWORD, socket_timeout=1)


def _answers(port: int) -> bool:
    client = _client(port)
    try:
        return bool(client.ping())
    except RedisError:
        return False
    finally:
        client.close()


def _events(port: int) -> int:
    client = _client(port)
    try:
        return cast(int, client.xlen(STREAM))
    finally:
        client.close()


@pytest.mark.timeout(120)
def test_the_redis_password_is_in_no_log_line_through_an_outage(cluster: Cluster) -> None:
    port = free_port()
    redis = start_node(cluster, "redis", port, *USER_ARGS, ready=lambda: _answers(port))
    cluster.redis_port = port
    cluster.settings_env["CVCO_REDIS_URL"] = f"redis://cvco:{PASSWORD}@127.0.0.1:{port}/0"
    receiver = cluster.start_receiver()
    worker = cluster.start_worker()
    url = f"http://127.0.0.1:{receiver.port}/ipn"
    first = cluster.simulate(url, "--scenario", "cvco-full", "--count", str(NOTIFICATIONS))

    redis.kill()
    wait_until(lambda: "worker lost Redis" in worker.log_text(), 30, "the worker saw Redis go")
    assert http_status(f"http://127.0.0.1:{receiver.port}/readyz") == 503
    time.sleep(1)  # a reconnect attempt or two against nothing
    redis = start_node(cluster, "redis-again", port, *USER_ARGS, ready=lambda: _answers(port))
    cluster.wait_ready(receiver)
    second = cluster.simulate(url, "--scenario", "cvco-full", "--count", str(NOTIFICATIONS))
    # the restarted Redis came back empty (no persistence): the second batch's events only
    wait_until(lambda: _events(port) == NOTIFICATIONS, 60, "the second batch processed")

    receiver.stop()
    worker.stop()
    logs = receiver.log_text() + worker.log_text()
    assert (
        first["total"]
        == second["total"]
        == {"sent": NOTIFICATIONS, "accepted": NOTIFICATIONS, "retried": 0, "failed": 0}
    )
    assert "worker lost Redis" in logs
    assert PASSWORD not in logs
