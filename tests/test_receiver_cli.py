"""`cvco-ipn serve` as a process: refuses to start without shops, serves, and stops cleanly on SIGTERM."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from urllib.error import URLError

from aiohttp import web

from cli.serve import _freeze_heap
from tests.conftest import PRODUCTION_KEY, SHOP_ID, TEST_KEY, TEST_REDIS_URL, free_port

SERVE = [sys.executable, "-m", "cli.main", "serve", "--host", "127.0.0.1"]


def _env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CVCO_")}
    return env | {"CVCO_REDIS_URL": TEST_REDIS_URL} | extra


def test_serve_without_shops_exits_2_with_one_line() -> None:
    """No CVCO_SHOPS: exit 2 and a one-line reason naming the variable."""
    done = subprocess.run([*SERVE, "--port", "1"], env=_env(), capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "CVCO_SHOPS" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_serve_with_a_bad_flag_exits_2() -> None:
    """An unknown flag is a usage error: exit 2."""
    done = subprocess.run([*SERVE, "--nope"], env=_env(), capture_output=True, text=True, timeout=30)
    assert done.returncode == 2


def test_serve_answers_healthz_and_stops_on_sigterm() -> None:
    """The receiver listens on --port, answers /healthz and /readyz, and exits 0 on SIGTERM."""
    port = free_port()
    shops = {SHOP_ID: {"test_key": TEST_KEY, "production_key": PRODUCTION_KEY}}
    process = subprocess.Popen(
        [*SERVE, "--port", str(port)],
        env=_env(CVCO_SHOPS=json.dumps(shops)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        status = None
        while status is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    status = response.status
            except (URLError, ConnectionError):
                time.sleep(0.1)
        assert status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            assert response.status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0
    assert b"receiver_starting" in stderr


async def test_startup_moves_the_start_up_heap_out_of_the_collectors_sight() -> None:
    """After start-up, the objects alive so far are frozen: a full collection no longer walks them."""
    survivor: list[int] = []
    assert gc.is_tracked(survivor)
    try:
        await _freeze_heap(web.Application())
        assert gc.get_freeze_count() > 0
        assert all(tracked is not survivor for tracked in gc.get_objects())
    finally:
        gc.unfreeze()
    assert any(tracked is survivor for tracked in gc.get_objects())
