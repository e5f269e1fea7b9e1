"""`cvco-ipn simulate` as an operator runs it: against a TLS URL with a test certificate, saying what it
waits for, listing the order ids it sent, and stopping on Ctrl-C with one line."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from tests.cli_process import SHOPS_JSON, Ran, cli_env, interrupt, run_cli, start_cli
from tests.conftest import free_port


@dataclass
class Target:
    url: str
    answers: list[int] = field(default_factory=list)
    """Statuses to answer, in turn; the last one stays."""
    received: int = 0


def certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA), as a test set-up has."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def serve(scheme: str, tls: ssl.SSLContext | None) -> AsyncIterator[Target]:
    port = free_port()
    target = Target(f"{scheme}://127.0.0.1:{port}/ipn")

    async def ipn(request: web.Request) -> web.Response:
        await request.read()
        target.received += 1
        status = target.answers.pop(0) if len(target.answers) > 1 else (target.answers or [200])[0]
        return web.Response(status=status, text="OK")

    app = web.Application()
    app.router.add_post("/ipn", ipn)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls).start()
    try:
        yield target
    finally:
        await runner.cleanup()


@pytest.fixture
def cert_files(tmp_path: Path) -> tuple[Path, Path]:
    return certificate(tmp_path)


@pytest.fixture
async def tls_target(cert_files: tuple[Path, Path]) -> AsyncIterator[Target]:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(*cert_files)
    async for target in serve("https", tls):
        yield target


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    async for plain in serve("http", None):
        yield plain


async def simulate(*argv: str, terminal: bool = False) -> Ran:
    """The CLI in a thread: the target answers from this test's event loop meanwhile."""
    return await asyncio.to_thread(
        run_cli, "simulate", *argv, env=cli_env(CVCO_SHOPS=SHOPS_JSON), terminal=terminal
    )


async def test_a_test_certificate_needs_cacert_or_insecure(
    tls_target: Target, cert_files: tuple[Path, Path]
) -> None:
    """Verified by default (refused: an unknown CA), with its CA given (delivered), or not verified at all."""
    plain = ("--url", tls_target.url, "--scenario", "refused", "--retries", "0")
    refused = await simulate(*plain)
    assert refused.status == 1 and "Certificate" in refused.out and tls_target.received == 0
    assert (await simulate(*plain, "--cacert", str(cert_files[0]))).status == 0
    delivered = tls_target.received
    assert delivered > 0
    assert (await simulate(*plain, "--insecure")).status == 0
    assert tls_target.received == 2 * delivered


async def test_a_cacert_that_is_not_a_ca_bundle_exits_2(tmp_path: Path) -> None:
    ran = await simulate("--cacert", str(tmp_path / "missing.pem"))
    assert ran.status == 2 and len(ran.err_lines) == 1 and "--cacert" in ran.err


async def test_the_order_ids_sent_are_listed_for_a_lookup(target: Target) -> None:
    ran = await simulate(
        "--url", target.url, "--scenario", "refused", "--scenario", "cvco-full", "--seed", "7"
    )
    assert ran.status == 0
    lines = ran.out.splitlines()
    [start] = [n for n, line in enumerate(lines) if line.startswith("order ids (")]
    count = int(lines[start].removeprefix("order ids (").removesuffix("):"))
    orders = [line.split() for line in lines[start + 1 : start + 1 + count]]
    assert count == len(orders) > 2 and {scenario for _, scenario in orders} == {"cvco-full", "refused"}
    again = await simulate(
        "--url", target.url, "--scenario", "refused", "--scenario", "cvco-full", "--seed", "7", "--json"
    )
    assert [o["order_id"] for o in json.loads(again.out)["orders"]] == [order for order, _ in orders]


async def test_on_a_terminal_a_scheduled_retry_says_what_it_waits_for(target: Target) -> None:
    target.answers[:] = [503, 200]
    ran = await simulate(
        "--url",
        target.url,
        "--scenario",
        "refused",
        "--retries",
        "2",
        "--retry-interval",
        "0.2",
        terminal=True,
    )
    assert ran.status == 0
    [said] = [line for line in ran.out.splitlines() if "retry 1 of 2" in line]
    assert "answered 503" in said and "in 0.2 s (--retry-interval)" in said


async def test_ctrl_c_stops_it_with_one_line(target: Target) -> None:
    target.answers[:] = [503]
    process = start_cli(
        *("simulate", "--url", target.url, "--scenario", "refused", "--retry-interval", "600"),
        env=cli_env(CVCO_SHOPS=SHOPS_JSON),
    )
    for _ in range(200):
        if target.received:
            break
        await asyncio.sleep(0.05)
    ran = await asyncio.to_thread(interrupt, process)
    assert ran.status == 130
    assert ran.err_lines == ["cvco-ipn simulate: interrupted; the notifications sent so far stay sent"]
