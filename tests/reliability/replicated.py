"""A replicated Redis on loopback: a primary, replicas and Sentinels, each a `Service` of a `Cluster`.

Nothing persists (no RDB, no AOF): the data lives in the processes, and the Sentinels' generated
configuration files in the test's directory. The cluster kills them all when the test ends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from tests.conftest import free_port
from tests.reliability.processes import REDIS_SERVER, Cluster, Service, wait_until

MASTER_NAME = "mymaster"
DOWN_AFTER_MS = 5000
"""Sentinel's default is 30 s; 5 s keeps the test short, yet above a loaded primary's stall during a full
sync (at 1 s, one core, Sentinel failed over a second time to a node that had only just synced)."""


def _ask(port: int, *command: str) -> Any:
    """One command to a loopback Redis or Sentinel; None when it does not answer."""
    client = Redis(port=port, socket_timeout=1, socket_connect_timeout=1)
    try:
        return client.execute_command(*command)  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
    except RedisError:
        return None
    finally:
        client.close()


def replication_field(port: int, name: str) -> object:
    """A field of `INFO replication` (`role`, `master_link_status`...), None when Redis does not answer."""
    info = _ask(port, "INFO", "replication")
    return info.get(name) if isinstance(info, dict) else None


def start_node(
    cluster: Cluster, name: str, port: int, *extra: str, ready: Callable[[], bool] | None = None
) -> Service:
    """One redis-server of `cluster` on loopback `port`, nothing persisted, once `ready()` (PING answers)."""
    argv = [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    argv += ["--dir", str(cluster.workdir), "--protected-mode", "no", "--repl-diskless-load", "on-empty-db"]
    service = Service(name, [*argv, *extra], {}, cluster.workdir / f"{name}.log", port=port)
    cluster.services.append(service.start())
    wait_until(ready or (lambda: _ask(port, "PING") is True), 10, f"{name} is ready")
    return service


@dataclass
class ReplicatedRedis:
    """The nodes of one replicated Redis; `sentinels_env` points cvco-ipn processes at it."""

    cluster: Cluster
    primary: Service
    replicas: list[Service] = field(default_factory=list)
    sentinels: list[Service] = field(default_factory=list)

    def node(self, name: str, port: int, *extra: str) -> Service:
        """Start one redis-server on `port` (again, when a killed node comes back)."""
        return start_node(self.cluster, name, port, *extra)

    def add_replica(self, port: int | None = None) -> Service:
        """A replica of the current primary, once its first sync is done."""
        port = port or free_port()
        replica = self.node(f"replica-{port}", port, "--replicaof", "127.0.0.1", str(self.primary.port))
        wait_until(lambda: replication_field(port, "master_link_status") == "up", 20, "replica synced")
        self.replicas.append(replica)
        return replica

    def add_sentinels(self, count: int = 3) -> None:
        """`count` Sentinels watching the primary (quorum: a majority), once each sees every other."""
        for index in range(count):
            port = free_port()
            conf = self.cluster.workdir / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {self.cluster.workdir}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.primary.port} {count // 2 + 1}\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER_NAME} 10000\n"
            )
            name = f"sentinel-{index}"
            service = Service(
                name,
                [REDIS_SERVER, str(conf), "--sentinel"],
                {},
                self.cluster.workdir / f"{name}.log",
                port=port,
            )
            self.cluster.services.append(service.start())
            self.sentinels.append(service)

        def see_each_other() -> bool:
            states = [_ask(sentinel.port or 0, "SENTINEL MASTER", MASTER_NAME) for sentinel in self.sentinels]
            return all(
                isinstance(state, dict) and state.get("num-other-sentinels") == count - 1 for state in states
            )

        wait_until(see_each_other, 20, "sentinels see each other")

    def primary_port_per_sentinels(self) -> int | None:
        """The primary's port as the first Sentinel that answers names it."""
        for sentinel in self.sentinels:
            address = _ask(sentinel.port or 0, "SENTINEL GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
            if address:
                return int(address[1])
        return None

    @property
    def sentinels_env(self) -> dict[str, str]:
        addresses = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
        return {"CVCO_REDIS_SENTINELS": addresses, "CVCO_REDIS_SENTINEL_MASTER": MASTER_NAME}


def start_replicated(cluster: Cluster, *, replicas: int = 1, sentinels: int = 0) -> ReplicatedRedis:
    """A primary with `replicas` replicas (and `sentinels` Sentinels), the cluster's Redis."""
    port = free_port()
    redis = ReplicatedRedis(cluster, primary=Service("primary", [], {}, cluster.workdir / "primary.log"))
    redis.primary = redis.node("primary", port)
    cluster.redis_port = port
    for _ in range(replicas):
        redis.add_replica()
    if sentinels:
        redis.add_sentinels(sentinels)
    return redis
