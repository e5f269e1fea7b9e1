"""`cvco-ipn serve` as a process against clients that misbehave: gone mid-body, stalled, malformed HTTP,
thousands of blank fields. Each is its own outcome, none an error, and no log line quotes their bytes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.error import URLError

from ingest.trans_ids import encode
from tests.conftest import SHOP_ID, TEST_KEY, free_port
from tests.test_receiver_cli import _env

SERVE = [sys.executable, "-m", "cli.main", "serve", "--host", "127.0.0.1"]
HEAD = b"POST /ipn HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
SECRET = b"signature=c2VjcmV0LXNpZ25hdHVyZQ"


@contextmanager
def serving(**env: str) -> Iterator[tuple[int, list[str]]]:
    """A `cvco-ipn serve` process on a free port; yields the port and, once it stopped, its stderr lines."""
    port = free_port()
    shops = {SHOP_ID: {"test_key": TEST_KEY, "modes": ["TEST"]}}
    process = subprocess.Popen(
        [*SERVE, "--port", str(port)],
        env=_env(CVCO_SHOPS=json.dumps(shops), **env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).close()
                break
            except (URLError, ConnectionError):
                time.sleep(0.1)
        yield port, lines
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
        lines += err.splitlines()


async def _send(port: int, data: bytes, *, close: bool) -> bytes:
    """Send raw bytes; then close at once (a client gone), or read the answer until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    answer = b"" if close else await reader.read()
    writer.close()
    return answer


def _outcomes(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    prefix = 'cvco_ipn_requests_total{outcome="'
    return {
        line[len(prefix) :].split('"')[0]: float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith(prefix)
    }


async def _until_counted(port: int, outcome: str, count: int) -> dict[str, float]:
    for _ in range(200):
        outcomes = await asyncio.to_thread(_outcomes, port)
        if outcomes.get(outcome, 0) >= count:
            return outcomes
        await asyncio.sleep(0.05)
    return outcomes


async def test_clients_gone_mid_body_and_malformed_requests_are_no_error_and_quote_nothing() -> None:
    """10 clients that close mid-body: outcome client_gone, never unavailable or 500. 10 malformed
    requests: aiohttp's 400. No log line is an error, carries a traceback or quotes a `signature=`."""
    with serving() as (port, lines):
        partial = HEAD + b"Content-Length: 5000\r\n\r\nvads_site_id=" + SHOP_ID.encode() + b"&" + SECRET
        await asyncio.gather(*(_send(port, partial, close=True) for _ in range(10)))
        outcomes = await _until_counted(port, "client_gone", 10)
        malformed = HEAD + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n" + SECRET + b": x\r\n\r\n"
        answers = await asyncio.gather(*(_send(port, malformed, close=False) for _ in range(10)))
    assert outcomes["client_gone"] == 10
    assert outcomes["unavailable"] == 0
    assert all(answer.startswith(b"HTTP/1.1 400") or answer.startswith(b"HTTP/1.0 400") for answer in answers)
    records = [json.loads(line) for line in lines]
    assert {record["level"] for record in records} <= {"info", "warning"}
    assert not [line for line in lines if "signature=" in line or "Traceback" in line or "c2VjcmV0" in line]
    assert sum(record.get("logger") == "aiohttp.server" for record in records) == 10


async def test_a_client_that_stalls_mid_body_gets_408_and_frees_its_request() -> None:
    """A body that stops coming is answered 408 after CVCO_BODY_TIMEOUT_S, not held for ever."""
    with serving(CVCO_BODY_TIMEOUT_S="0.3") as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HEAD + b"Connection: close\r\nContent-Length: 5000\r\n\r\nvads_site_id=1")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        answer = head + await reader.readexactly(length)
        writer.close()
        outcomes = await asyncio.to_thread(_outcomes, port)
    assert answer.startswith(b"HTTP/1.1 408")
    assert answer.endswith(b"body not received within 0.3 s")
    assert outcomes["client_gone"] == 1


async def test_thousands_of_blank_fields_are_refused_before_any_is_decoded() -> None:
    """6,500 blank vads_ fields (61 KB): 400 naming the field bound, whatever they would decode to."""
    body = b"&".join(b"vads_%s=" % encode(n)[-3:].encode() for n in range(6500))
    assert len(body) < 64 * 1024
    with serving() as (port, _):
        head = HEAD + b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
        answer = await _send(port, head + body, close=False)
    assert answer.startswith(b"HTTP/1.1 400")
    assert answer.endswith(b"more than 2000 fields")
