"""`CVCO_REDIS_MIN_REPLICAS=1` against a real primary and replica: a 200 only once the replica holds the
job; the only replica down gives 503 within `CVCO_REDIS_TIMEOUT_S` (and `/readyz` 503), 200 once it is back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import TestClient, TestServer
from arq.constants import job_key_prefix
from redis import Redis

from ingest.app import create_app
from ingest.enqueue import SWEEPS_PER_TIMEOUT
from schemas.job import notification_job_id
from schemas.settings import Settings, ShopConfig
from tests.conftest import SHOP_ID
from tests.reliability.processes import Cluster, wait_until
from tests.reliability.replicated import replication_field, start_replicated
from tests.test_receiver import FORM, notification, signed

TIMEOUT_S = 1.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with Cluster(tmp_path) as running:
        yield running


def _holds_job(port: int, fields: dict[str, str]) -> bool:
    client = Redis(port=port)
    try:
        return bool(client.exists(job_key_prefix + notification_job_id(fields)))
    finally:
        client.close()


async def test_the_only_replica_down_gives_503_within_the_timeout_then_200_once_back(
    cluster: Cluster, shop: ShopConfig
) -> None:
    redis = start_replicated(cluster, replicas=1)
    primary, replica = redis.primary.port or 0, redis.replicas[0]
    settings = Settings(
        redis_url=f"redis://127.0.0.1:{primary}/0",
        shops={SHOP_ID: shop},
        redis_min_replicas=1,
        redis_timeout_s=TIMEOUT_S,
    )
    first = signed(notification(vads_trans_id="rep001"), shop)
    second = signed(notification(vads_trans_id="rep002"), shop)
    async with TestClient(TestServer(create_app(settings))) as client:
        answer = await client.post("/ipn", data=urlencode(first), headers=FORM)
        assert answer.status == 200
        assert _holds_job(replica.port or 0, first), "a 200 before the replica held the job"
        assert (await client.get("/readyz")).status == 200

        replica.kill()
        wait_until(
            lambda: replication_field(primary, "connected_slaves") == 0, 10, "primary saw its replica go"
        )
        started = time.monotonic()
        answer = await client.post("/ipn", data=urlencode(second), headers=FORM)
        elapsed_s = time.monotonic() - started
        assert answer.status == 503
        # the deadline sweep runs every timeout / SWEEPS_PER_TIMEOUT: an answer at most that late
        assert elapsed_s <= TIMEOUT_S * (1 + 1 / SWEEPS_PER_TIMEOUT) + 0.1
        ready = await client.get("/readyz")
        assert (ready.status, await ready.text()) == (503, "0 of 1 Redis replicas connected")

        redis.replicas.remove(replica)
        redis.add_replica(port=replica.port)
        # the platform's resend: already queued on the primary, a 200 again now that a replica holds it
        answer = await client.post("/ipn", data=urlencode(second), headers=FORM)
        assert answer.status == 200
        assert _holds_job(replica.port or 0, second)
        assert (await client.get("/readyz")).status == 200


async def test_without_min_replicas_a_replica_is_not_awaited(cluster: Cluster, shop: ShopConfig) -> None:
    redis = start_replicated(cluster, replicas=1)
    redis.replicas[0].kill()
    settings = Settings(redis_url=f"redis://127.0.0.1:{redis.primary.port}/0", shops={SHOP_ID: shop})
    async with TestClient(TestServer(create_app(settings))) as client:
        answer = await client.post("/ipn", data=urlencode(signed(notification(), shop)), headers=FORM)
        assert answer.status == 200
        assert (await client.get("/readyz")).status == 200


async def test_a_url_naming_a_replica_never_gets_a_200(cluster: Cluster, shop: ShopConfig) -> None:
    redis = start_replicated(cluster, replicas=1)
    settings = Settings(redis_url=f"redis://127.0.0.1:{redis.replicas[0].port}/0", shops={SHOP_ID: shop})
    async with TestClient(TestServer(create_app(settings))) as client:
        answer = await client.post("/ipn", data=urlencode(signed(notification(), shop)), headers=FORM)
        assert answer.status == 503
