"""The receiver's log lines: one JSON summary per request on stderr, correlation ids that never leak."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from typing import Any
from urllib.error import URLError
from urllib.parse import urlencode

from schemas.settings import Settings, ShopConfig
from tests.conftest import PRODUCTION_KEY, SHOP_ID, TEST_KEY, TEST_REDIS_URL, free_port
from tests.test_receiver import captured_logs, notification, receiver, signed


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    """Send one HTTP/1.1 request on an open connection and read its whole answer; its status."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(line.split(":")[1]) for line in lines if line.lower().startswith("content-length:"))
    await reader.readexactly(length)
    return int(lines[0].split()[1])


async def test_keep_alive_request_does_not_inherit_the_previous_requests_ids(
    settings: Settings, shop: ShopConfig
) -> None:
    """Two requests on one connection: the second's summary line carries none of the first one's ids."""
    body = urlencode(signed(notification(), shop)).encode()
    first = (
        b"POST /ipn HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    second = b"POST /ipn HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: 1\r\n\r\nx"
    with captured_logs() as logs:
        async with receiver(settings) as client:
            reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
            try:
                assert await _exchange(reader, writer, first) == 200
                assert await _exchange(reader, writer, second) == 400
            finally:
                writer.close()
                await writer.wait_closed()
    summaries = [entry for entry in logs if entry["event"] == "request"]
    assert [entry["status"] for entry in summaries] == [200, 400]
    assert summaries[0]["order_id"] == "order-42"
    assert summaries[0]["request_id"] != summaries[1]["request_id"]
    for key in ("shop_id", "order_id", "trans_uuid", "trans_id"):
        assert key not in summaries[1]


def _serve_and_post(body: str) -> tuple[int, list[dict[str, Any]], str]:
    """Run `cvco-ipn serve` with stderr piped, POST one body, stop it; the status, JSON lines and raw stderr."""
    port = free_port()
    shops = {SHOP_ID: {"test_key": TEST_KEY, "production_key": PRODUCTION_KEY}}
    env = {key: value for key, value in os.environ.items() if not key.startswith("CVCO_")}
    env |= {"CVCO_REDIS_URL": TEST_REDIS_URL, "CVCO_SHOPS": json.dumps(shops)}
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    status = 0
    try:
        deadline = time.monotonic() + 20
        while status == 0 and time.monotonic() < deadline:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/ipn",
                data=body.encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310  # a fixed http://127.0.0.1 URL
                    status = response.status
            except (URLError, ConnectionError):
                time.sleep(0.1)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=20)
    text = stderr.decode("utf-8")
    return status, [json.loads(line) for line in text.splitlines()], text


def test_serve_writes_one_json_summary_line_per_notification(shop: ShopConfig) -> None:
    """Under `cvco-ipn serve`, stderr holds one JSON line for the POST with every correlation id, no secret."""
    fields = signed(notification(vads_trans_uuid=uuid.uuid4().hex), shop)
    status, lines, text = _serve_and_post(urlencode(fields))
    assert status == 200
    summaries = [line for line in lines if line["event"] == "request"]
    assert len(summaries) == 1
    summary = summaries[0]
    assert summary["level"] == "info"
    assert summary["timestamp"].endswith("Z")
    assert (summary["method"], summary["path"], summary["status"], summary["outcome"]) == (
        "POST",
        "/ipn",
        200,
        "ok",
    )
    assert summary["shop_id"] == SHOP_ID
    assert summary["order_id"] == "order-42"
    assert summary["trans_uuid"] == fields["vads_trans_uuid"]
    assert summary["trans_id"] == "a1b2c3"
    assert summary["client_ip"] == "127.0.0.1"
    assert len(summary["request_id"]) == 32
    assert summary["latency_ms"] >= 0
    for secret in (fields["signature"], TEST_KEY, PRODUCTION_KEY):
        assert secret not in text


def _logged_lines(script: str) -> list[dict[str, Any]]:
    """The JSON log lines a Python script writes to stderr, run in a process of its own (logging is global)."""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    return [json.loads(line) for line in done.stderr.splitlines()]


def test_stdlib_records_get_the_same_processors_as_structlog_events() -> None:
    """A stdlib record (as arq and aiohttp write) becomes a JSON line with level, time and context, plus
    the stdlib logger's name."""
    script = (
        "import logging, structlog\n"
        "from cli.logs import configure_logging\n"
        "configure_logging(json=True)\n"
        "structlog.contextvars.bind_contextvars(job_id='j1')\n"
        "logging.getLogger('arq.worker').warning('stdlib %s', 'record')\n"
        "structlog.get_logger('cvco.worker').info('native', n=1)\n"
        "structlog.get_logger('cvco.worker').debug('below the level')\n"
    )
    stdlib, native = _logged_lines(script)
    assert (stdlib["event"], stdlib["level"], stdlib["logger"], stdlib["job_id"]) == (
        "stdlib record",
        "warning",
        "arq.worker",
        "j1",
    )
    assert (native["event"], native["level"], native["job_id"], native["n"]) == ("native", "info", "j1", 1)
    assert set(stdlib) - {"event", "logger"} <= set(native)
    assert stdlib["timestamp"].endswith("Z") and native["timestamp"].endswith("Z")
