"""Worker benchmark (a script, not collected by pytest).

1. Throughput: N process_notification jobs (N distinct payments) drained by a burst worker with the whole
   processing (re-verify, decide, Lua apply, XADD, failure wrapper, summary log line), versus N no-op
   jobs with the same payload and options on arq's stock `Worker`, on the same Redis in the same run.
   Target: >= 80 % of that no-op. Also printed: the no-op on our worker class (same options and
   per-function limits, no failure wrapper: it is part of our processing), which claims, starts and
   finishes jobs in fewer round trips (workers/arq_adapter.py). The three runs are repeated --rounds times,
   interleaved, and the median ratios reported (a shared machine).
2. End to end: `cvco-ipn serve` and `cvco-ipn worker` as subprocesses, notifications POSTed at RATE/s for
   a few seconds; latency = stream entry time (its id, Redis clock) - POST start. Target p99 <= 100 ms.

Run: CVCO_TEST_REDIS_URL=redis://127.0.0.1:6379/13 .venv/bin/python -m tests.perf.bench_worker [--jobs N]
     [--rounds R] [--rate RATE] [--seconds S] [--workers W]
It flushes that database first: never point it at a database holding anything of value.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from typing import Any
from urllib.parse import urlencode

import aiohttp
import uvloop
from arq.connections import RedisSettings, create_pool
from arq.worker import Worker, func
from pydantic import SecretStr
from redis.asyncio import Redis

from cli.logs import configure_logging
from cli.worker import quiet_arq_job_lines
from schemas.job import PROCESS_NOTIFICATION, dumps, loads, notification_job_id
from schemas.settings import Settings, ShopConfig
from tests.notifications import notification, queued, signed
from workers.arq_adapter import ClaimingWorker
from workers.worker import MAX_JOBS, worker_options

REDIS_URL = os.environ.get("CVCO_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
SHOP_ID = "12345678"
KEY = "1122334455667788"


def _settings() -> Settings:
    shop = ShopConfig(test_key=SecretStr(KEY), production_key=SecretStr(KEY[::-1]))
    return Settings(
        redis_url=REDIS_URL, shops={SHOP_ID: shop}, stream="cvco:bench-events", queue_name="cvco:bench-q"
    )


def _trans_id(index: int) -> str:
    return f"{index:06d}"[-6:] if index < 1_000_000 else f"{index:06x}"[-6:]


async def noop(ctx: dict[str, Any], payload: dict[str, Any]) -> str:
    return "noop"


async def _fill(settings: Settings, jobs: int, name: str, queue: str, tag: str = "") -> None:
    pool = await create_pool(RedisSettings.from_dsn(REDIS_URL), job_serializer=dumps, job_deserializer=loads)
    shop = settings.shops[SHOP_ID]
    for index in range(jobs):
        job = queued(notification("AUTHORISED", trans_id=_trans_id(index)), shop)
        job_id = f"{name}{tag}:{notification_job_id(job.fields)}"  # arq keeps results: ids differ per run
        await pool.enqueue_job(name, job.model_dump(mode="json"), _job_id=job_id, _queue_name=queue)
    await pool.aclose()


async def _timed(worker: Worker) -> float:
    started = time.perf_counter()
    try:
        await worker.main()
    finally:
        await worker.close()
    return time.perf_counter() - started


async def throughput(jobs: int) -> tuple[float, float, float]:
    """Jobs/s of: a no-op job and the whole processing on the same worker (class and options), and a
    no-op job on arq's stock `Worker` with the same options (for reference)."""
    settings = _settings()
    redis = Redis.from_url(REDIS_URL)
    await redis.flushdb()
    options = worker_options(settings, burst=True, poll_delay=0, handle_signals=False)
    # the same options and per-function limits as process_notification; only the job body differs
    ours = options["functions"][0]
    noop_function = func(noop, name="noop", timeout=ours.timeout_s, max_tries=ours.max_tries)
    noop_options = {**options, "functions": [noop_function], "cron_jobs": [], "queue_name": "cvco:bench-noop"}
    await _fill(settings, jobs, "noop", "cvco:bench-noop")
    noop_s = await _timed(ClaimingWorker(**noop_options))
    await _fill(settings, jobs, "noop", "cvco:bench-noop", tag="-stock")
    # arq's own pool too (its `create_pool`, connections packing commands in Python): arq as shipped
    stock_options = {name: value for name, value in noop_options.items() if name != "redis_pool"}
    stock_options["redis_settings"] = RedisSettings.from_dsn(REDIS_URL)
    stock_s = await _timed(Worker(**stock_options))
    await _fill(settings, jobs, PROCESS_NOTIFICATION, settings.queue_name)
    full_s = await _timed(ClaimingWorker(**options))
    published = await redis.xlen(settings.stream)
    await redis.aclose()
    if published != jobs:
        raise SystemExit(f"expected {jobs} events, found {published}")
    return jobs / noop_s, jobs / full_s, jobs / stock_s


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from /proc (Linux); 0 where unreadable."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _form_post(fields: dict[str, str]) -> bytes:
    """A whole `POST /ipn` request, form-encoded, as the platform sends a notification."""
    body = urlencode(fields).encode("ascii")
    head = (
        "POST /ipn HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


class _KeepAliveClient:
    """The end-to-end load generator: pre-built requests over keep-alive connections, one request at a time
    on each, a new connection whenever all are busy.

    It shares the 2 cores with the receiver, the workers and Redis: aiohttp's client, encoding each form and
    parsing each answer, took 0.4 ms of CPU per notification, a fifth of what the machine has at 1,000/s.
    """

    def __init__(self, port: int) -> None:
        self._port = port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._all: list[asyncio.StreamWriter] = []

    async def send(self, request: bytes) -> int:
        """Send one request and read its whole answer; its status code."""
        if self._idle:
            reader, writer = self._idle.pop()
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", self._port)
            self._all.append(writer)
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        await reader.readexactly(int(length.group(1)) if length else 0)
        self._idle.append((reader, writer))
        return int(head[9:12])

    def close(self) -> None:
        for writer in self._all:
            writer.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _wait_ready(session: aiohttp.ClientSession, redis: Redis, port: int, settings: Settings) -> None:
    """Until the receiver answers (at most 10 s) and a worker has polled the queue (at most 20 s)."""
    for _ in range(100):
        try:
            async with session.get(f"http://127.0.0.1:{port}/healthz") as answer:
                if answer.status == 200:
                    break
        except aiohttp.ClientError:
            await asyncio.sleep(0.1)
    for _ in range(200):
        if await redis.exists(settings.queue_name + ":health-check"):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1)  # the other workers start alongside


async def end_to_end(
    rate: int, seconds: float, workers: int
) -> tuple[list[float], list[float], dict[str, float]]:
    """Latencies (s) of each notification: POST start to stream entry, and POST start to the receiver's 200;
    and the CPU milliseconds per notification of each process (receiver, workers, Redis, this load generator).
    """
    settings = _settings()
    redis = Redis.from_url(REDIS_URL)
    await redis.flushdb()
    port = _free_port()
    env = {
        **os.environ,
        "CVCO_REDIS_URL": REDIS_URL,
        "CVCO_STREAM": settings.stream,
        "CVCO_QUEUE_NAME": settings.queue_name,
        "CVCO_SHOPS": json.dumps({SHOP_ID: {"test_key": KEY, "production_key": KEY[::-1]}}),
    }
    command = [sys.executable, "-m", "cli.main"]
    quiet = {"env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    # started before the measured window: Popen's short fork is not in any timing
    serve = subprocess.Popen([*command, "serve", "--host", "127.0.0.1", "--port", str(port)], **quiet)  # type: ignore[call-overload]  # noqa: ASYNC220  # kwargs dict; see above
    processes = [serve] + [
        subprocess.Popen([*command, "worker"], **quiet)  # type: ignore[call-overload]  # noqa: ASYNC220  # kwargs dict; see above
        for _ in range(workers)
    ]
    shop = settings.shops[SHOP_ID]
    total = int(rate * seconds)
    requests = {
        trans_id: _form_post(signed(notification("AUTHORISED", trans_id=trans_id), shop))
        for trans_id in (_trans_id(500_000 + index) for index in range(total))
    }
    sent: dict[str, float] = {}
    answered: list[float] = []
    client = _KeepAliveClient(port)
    try:
        async with aiohttp.ClientSession() as session:
            await _wait_ready(session, redis, port, settings)

        async def post(trans_id: str) -> None:
            sent[trans_id] = time.time()
            status = await client.send(requests[trans_id])
            if status != 200:
                raise SystemExit(f"receiver answered {status}")
            answered.append(time.time() - sent[trans_id])

        redis_pid = int((await redis.info("server"))["process_id"])
        pids = {"receiver": [serve.pid], "workers": [p.pid for p in processes[1:]]}
        pids.update({"redis": [redis_pid], "load generator": [os.getpid()]})
        cpu_before = {name: sum(_cpu_s(pid) for pid in group) for name, group in pids.items()}
        started = time.perf_counter()
        tasks = []
        for index, trans_id in enumerate(requests):
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(trans_id)))
        await asyncio.gather(*tasks)
        deadline = time.time() + 30
        while await redis.xlen(settings.stream) < total and time.time() < deadline:  # noqa: ASYNC110  # polling another process's output
            await asyncio.sleep(0.05)
        cpu_ms = {
            name: (sum(_cpu_s(pid) for pid in group) - cpu_before[name]) * 1000 / total
            for name, group in pids.items()
        }
        latencies = []
        for entry_id, fields in await redis.xrange(settings.stream):
            event = json.loads(fields[b"event"])
            stamp_ms = int(entry_id.split(b"-")[0])
            latencies.append(stamp_ms / 1000 - sent[event["trans_id"]])
        if len(latencies) != total:
            raise SystemExit(f"expected {total} events, found {len(latencies)}")
        return latencies, answered, cpu_ms
    finally:
        client.close()
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
        await redis.aclose()


def _quiet_logging() -> None:
    """Production logging (JSON, one line per job, arq's info lines dropped as by `cvco-ipn worker`)
    written to /dev/null: its cost counts, not its output.

    Configured once, while `sys.stderr` is /dev/null: structlog's writer, the stdlib handler and the loggers
    structlog caches on first use all keep the stream they were given, for the rest of the script.
    """
    devnull = open(os.devnull, "w")  # noqa: SIM115  # lives as long as the script, in the handler
    with contextlib.redirect_stderr(devnull):
        configure_logging(json=True)
    quiet_arq_job_lines()


def _percentiles(seconds: list[float]) -> tuple[float, float]:
    """p50 and p99, in ms."""
    ordered = sorted(seconds)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.99) - 1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--rate", type=int, default=1000, help="notifications per second, end to end")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=1, help="worker processes, end to end")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="throughput rounds (each runs all three); the median is reported",
    )
    args = parser.parse_args()
    same_class, stock = [], []
    _quiet_logging()
    for round_number in range(1, args.rounds + 1):
        noop_rate, full_rate, stock_rate = uvloop.run(throughput(args.jobs))
        same_class.append(full_rate / noop_rate)
        stock.append(full_rate / stock_rate)
        print(
            f"round {round_number}: no-op on the same worker {noop_rate:4.0f} jobs/s, no-op on arq's Worker "
            f"{stock_rate:4.0f} jobs/s, process_notification {full_rate:4.0f} events/s "
            f"({args.jobs} jobs each, max_jobs={MAX_JOBS})"
        )
    print(
        f"process_notification, median of {args.rounds} rounds: {statistics.median(stock):.0%} of the no-op on "
        f"arq's stock Worker (target >= 80 %), {statistics.median(same_class):.0%} of the no-op on our worker "
        "class (whose claim, start and finish cost fewer round trips a job)"
    )
    latencies, answered, cpu_ms = uvloop.run(end_to_end(args.rate, args.seconds, args.workers))
    p50, p99 = _percentiles(latencies)
    print(
        f"POST -> stream at {args.rate}/s for {args.seconds:g} s, {args.workers} worker process(es): "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (target <= 100)"
    )
    p50, p99 = _percentiles(answered)
    print(f"  of which POST -> 200 (receiver, load generator): p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    shares = ", ".join(f"{name} {ms:.2f}" for name, ms in cpu_ms.items())
    print(f"  CPU ms per notification: {shares}; total {sum(cpu_ms.values()):.2f} (2 cores = 2.00 at 1000/s)")


if __name__ == "__main__":
    main()
