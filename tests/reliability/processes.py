"""Real processes on loopback for fault-injection and load tests: Redis, receivers, workers, nginx.

A `Cluster` starts each as its own process group with its output in a log file, offers `kill -9` and
restarts, and stops everything it started when closed, whatever happened. Used by the pytest fixtures in
`conftest.py` and by the stand-alone load script `tests/perf/load_lb.py`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from schemas.settings import ShopConfig
from tests.conftest import PRODUCTION_KEY, SHOP_ID, TEST_KEY, free_port
from tests.deploy_files import render_nginx_conf

REPO = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name("cvco-ipn"))
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
REDIS_SERVER = shutil.which("redis-server") or "redis-server"


def wait_until(check: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.05) -> None:
    """Poll `check()` until it is true; fail the caller with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval_s)
    raise TimeoutError(f"{what}: not true after {timeout_s:g} s")


def http_status(url: str, timeout_s: float = 1.0) -> int | None:
    """The status of a GET, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310  # loopback URL built here
            status: int = response.status
            return status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


@dataclass
class Service:
    """One running process (group), its command and where its output goes."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    port: int | None = None
    stdout_path: Path | None = None
    """When set, stdout goes there (a JSON result) and only stderr to `log_path`."""

    def start(self) -> Service:
        log = self.log_path.open("ab")
        out = self.stdout_path.open("wb") if self.stdout_path else None
        try:
            self.process = subprocess.Popen(  # argv built by this module, no shell
                self.argv,
                env=self.env,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=out or log,
                stderr=log if out else subprocess.STDOUT,
                start_new_session=True,  # own process group: kill -9 reaches its children too
            )
        finally:
            log.close()
            if out:
                out.close()
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """`kill -9` the whole process group, as a crash or an OOM kill would."""
        self._signal(signal.SIGKILL)
        self.wait(10)

    def stop(self, grace_s: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after `grace_s`; the exit status."""
        self._signal(signal.SIGTERM)
        if not self.wait(grace_s):
            self.kill()
        return None if self.process is None else self.process.returncode

    def wait(self, timeout_s: float) -> bool:
        if self.process is None:
            return True
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return False
        return True

    def log_text(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace") if self.log_path.exists() else ""

    def _signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)


def shops_json() -> str:
    """`CVCO_SHOPS` for the test shop: both modes, both algorithms, the keys of tests/conftest.py."""
    return json.dumps(
        {
            SHOP_ID: {
                "test_key": TEST_KEY,
                "production_key": PRODUCTION_KEY,
                "algorithms": ["HMAC-SHA-256", "SHA-1"],
                "modes": ["TEST", "PRODUCTION"],
            }
        }
    )


def shop_config() -> ShopConfig:
    """The shop of `shops_json()`, for signing notifications in the test process."""
    return ShopConfig.model_validate(json.loads(shops_json())[SHOP_ID])


@dataclass
class Cluster:
    """Every process of one test, in `workdir`; `close()` stops them all (also on failure)."""

    workdir: Path
    settings_env: dict[str, str] = field(default_factory=dict)
    services: list[Service] = field(default_factory=list)
    redis_port: int | None = None

    def __enter__(self) -> Cluster:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        for service in reversed(self.services):
            service.kill()

    # --- Redis -----------------------------------------------------------------------------------------

    def start_redis(self, *, aof: bool = False, port: int | None = None) -> Service:
        """A private redis-server on loopback; with `aof`, every write is fsynced before it is answered."""
        self.redis_port = port or self.redis_port or free_port()
        data = self.workdir / "redis-data"
        data.mkdir(exist_ok=True)
        argv = [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(self.redis_port), "--save", ""]
        argv += ["--dir", str(data), "--protected-mode", "no"]
        argv += ["--appendonly", "yes", "--appendfsync", "always"] if aof else ["--appendonly", "no"]
        service = self._add(Service("redis", argv, dict(os.environ), self.workdir / "redis.log"))
        service.port = self.redis_port
        wait_until(lambda: self._redis_answers(), 10, "redis-server answers PING")
        return service

    def _redis_answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.redis_port or 0), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    # --- cvco-ipn processes ----------------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        """The process environment: no inherited CVCO_*, the test shop, this cluster's Redis."""
        env = {name: value for name, value in os.environ.items() if not name.startswith("CVCO_")}
        env.update(
            CVCO_REDIS_URL=self.redis_url,
            CVCO_SHOPS=shops_json(),
            CVCO_STREAM="cvco:events",
            CVCO_JOB_TIMEOUT_S="3",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.settings_env)
        env.update(extra)
        return env

    def start_receiver(self, port: int | None = None, **extra_env: str) -> Service:
        """`cvco-ipn serve` on a loopback port, once `/readyz` answers 200."""
        port = port or free_port()
        name = f"receiver-{port}"
        argv = [CLI, "serve", "--host", "127.0.0.1", "--port", str(port)]
        service = self._add(Service(name, argv, self.env(**extra_env), self.workdir / f"{name}.log"))
        service.port = port
        self.wait_ready(service)
        return service

    def wait_ready(self, service: Service, timeout_s: float = 20) -> None:
        def ready() -> bool:
            if not service.running:
                raise RuntimeError(f"{service.name} exited:\n{service.log_text()[-2000:]}")
            return http_status(f"http://127.0.0.1:{service.port}/readyz") == 200

        wait_until(ready, timeout_s, f"{service.name} /readyz")

    def start_worker(self, *, burst: bool = False, **extra_env: str) -> Service:
        index = sum(1 for s in self.services if s.name.startswith("worker"))
        argv = [CLI, "worker", *(["--burst"] if burst else [])]
        name = f"worker-{index}"
        return self._add(Service(name, argv, self.env(**extra_env), self.workdir / f"{name}.log"))

    def cli(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        """Run one `cvco-ipn` command against this cluster's Redis and wait for it."""
        return subprocess.run(  # argv built here, no shell
            [CLI, *args], env=self.env(), cwd=REPO, capture_output=True, text=True, timeout=timeout_s
        )

    def simulate(self, url: str, *args: str, timeout_s: float = 300) -> dict[str, object]:
        """`cvco-ipn simulate --json` to `url`; its summary."""
        done = self.cli("simulate", "--url", url, "--json", *args, timeout_s=timeout_s)
        if not done.stdout.strip():
            raise RuntimeError(f"simulate printed nothing (exit {done.returncode}):\n{done.stderr[-2000:]}")
        summary: dict[str, object] = json.loads(done.stdout)
        return summary

    def start_simulate(self, url: str, *args: str) -> Service:
        """`cvco-ipn simulate --json` in the background; read its summary with `simulate_result`."""
        index = sum(1 for s in self.services if s.name.startswith("simulate"))
        name = f"simulate-{index}"
        argv = [CLI, "simulate", "--url", url, "--json", *args]
        service = Service(name, argv, self.env(), self.workdir / f"{name}.log")
        service.stdout_path = self.workdir / f"{name}.json"
        return self._add(service)

    def simulate_result(self, simulation: Service, timeout_s: float) -> dict[str, object]:
        """Wait for a background simulation and return its JSON summary."""
        if not simulation.wait(timeout_s):
            raise TimeoutError(f"{simulation.name} still running after {timeout_s:g} s")
        assert simulation.stdout_path is not None
        text = simulation.stdout_path.read_text()
        if not text.strip():
            raise RuntimeError(f"{simulation.name} printed nothing:\n{simulation.log_text()[-2000:]}")
        summary: dict[str, object] = json.loads(text)
        return summary

    # --- nginx -------------------------------------------------------------------------------------------

    def start_nginx(self, upstream_ports: Sequence[int], **tuning: str) -> Service:
        """nginx running deploy/nginx as shipped, its three include files rendered for loopback."""
        prefix = self.workdir / "nginx"
        port = free_port()
        upstreams = [f"127.0.0.1:{upstream}" for upstream in upstream_ports]
        conf = render_nginx_conf(prefix, upstreams, port, free_port())
        directives = f"pid {prefix}/nginx.pid; daemon off;"
        if os.geteuid() == 0:
            directives += " user root;"  # workers must write their temp files in the test's directory
        for name, value in tuning.items():
            directives += f" {name} {value};"
        argv = [NGINX, "-e", "stderr", "-p", str(prefix), "-c", str(conf), "-g", directives]
        service = self._add(Service("nginx", argv, dict(os.environ), self.workdir / "nginx.log"))
        service.port = port
        wait_until(
            lambda: http_status(f"http://127.0.0.1:{port}/healthz") == 200, 10, "nginx proxies /healthz"
        )
        return service

    def _add(self, service: Service) -> Service:
        self.services.append(service)
        return service.start()
