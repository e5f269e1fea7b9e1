"""CPU instructions per notification of `cvco-ipn serve` and of the naive baseline, counted by callgrind.

    .venv/bin/python -m tests.perf.instructions_receiver [--requests N] [--warmup N] [--concurrency C]
        [--redis URL] [--replicated]

bench_receiver.py times the two servers with wrk; on this shared machine their speed can change by half
within seconds, and the timed ratio with it. This script counts instead: each server runs under valgrind's
callgrind, takes --warmup requests uninstrumented (imports, caches, the Lua script load), then --requests
distinct pre-signed notifications from C concurrent connections with instrumentation on. The instructions
it runs in user space, divided by the requests, are repeatable to a fraction of a percent whatever else the
machine does: the yardstick for a change to the receiver's code (run it before and after).

What it leaves out is the kernel's share: every socket read and write, which this machine cannot count
(no hardware counters for `perf`). The baseline makes several Redis round trips per request where
`cvco-ipn serve` shares one among a batch: `strace -c` over 2,000 such requests counted 17 system calls
per request for the baseline (4 writes, 4 reads, 3 epoll waits) against 6 for ours (1.2 writes, 1.1 reads,
0.3 epoll waits). So its user-space ratio to ours is lower than the ratio of CPU time per request that
bench_receiver.py prints. Needs valgrind (Debian's valgrind) and a Redis
database it may flush (default redis://127.0.0.1:6379/14). Takes about a minute per server.

--replicated: a private primary with one replica instead of --redis, and `cvco-ipn serve` with
CVCO_REDIS_MIN_REPLICAS=1 counted too (its WAIT per batch).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import aiohttp

from tests.perf.bench_receiver import (
    REPLICATED,
    SERVERS,
    free_port,
    notification_bodies,
    replicated_redis,
    server_command,
    serving,
)

VALGRIND_START_S = 120.0
"""Python under valgrind takes tens of seconds to start listening."""


async def post_all(port: int, bodies: list[str], concurrency: int) -> int:
    """POST every body to `/ipn` over `concurrency` connections; the number of answers other than 200."""
    queue = list(reversed(bodies))
    refused = 0
    url = f"http://127.0.0.1:{port}/ipn"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def poster() -> None:
            nonlocal refused
            while queue:
                async with session.post(url, data=queue.pop().encode(), headers=headers) as response:
                    await response.read()
                    refused += response.status != 200

        await asyncio.gather(*(poster() for _ in range(concurrency)))
    return refused


def callgrind_instrumentation(pid: int, state: str) -> None:
    """Turn callgrind's instrumentation of process `pid` "on" or "off"."""
    subprocess.run(["callgrind_control", "--instr", state, str(pid)], check=True, capture_output=True)


def instructions_per_request(name: str, bodies: list[str], args: argparse.Namespace, tmp: Path) -> float:
    """Run server `name` under callgrind and count the instructions its measured requests cost."""
    port = free_port()
    command, env = server_command(name, port, args.redis)
    out_file = tmp / f"{name.replace(' ', '-')}.callgrind"
    callgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out_file}"]
    warmup, measured = bodies[: args.warmup], bodies[args.warmup :]
    with serving([*callgrind, *command], env, port, args.redis, VALGRIND_START_S) as (server, _):
        asyncio.run(post_all(port, warmup, args.concurrency))
        callgrind_instrumentation(server.pid, "on")
        refused = asyncio.run(post_all(port, measured, args.concurrency))
        callgrind_instrumentation(server.pid, "off")
    if refused:
        raise SystemExit(f"{name}: {refused} of {len(measured)} requests not answered 200")
    totals = re.search(r"^totals: (\d+)", out_file.read_text(), re.MULTILINE)
    if totals is None:
        raise SystemExit(f"{name}: no totals line in callgrind's output {out_file}")
    return int(totals.group(1)) / len(measured)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000, help="measured requests per server")
    parser.add_argument("--warmup", type=int, default=300, help="unmeasured requests first")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--redis", default="redis://127.0.0.1:6379/14", help="a Redis database to flush and use"
    )
    parser.add_argument(
        "--replicated",
        action="store_true",
        help="a private primary with one replica, and serve with CVCO_REDIS_MIN_REPLICAS=1 counted too",
    )
    args = parser.parse_args()
    if args.requests < 1 or args.warmup < 0 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be at least 1, --warmup at least 0")
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} not found: install the Debian package valgrind (apt-get install valgrind)")
    bodies = notification_bodies(args.warmup + args.requests)
    counts = {}
    with tempfile.TemporaryDirectory(prefix="cvco-callgrind-") as tmp, contextlib.ExitStack() as stack:
        if args.replicated:
            args.redis = stack.enter_context(replicated_redis(Path(tmp)))
        for name in (*SERVERS, *((REPLICATED,) if args.replicated else ())):
            counts[name] = instructions_per_request(name, bodies, args, Path(tmp))
    print(
        f"{args.requests} requests after {args.warmup} of warm-up, {args.concurrency} connections, "
        "instructions in user space per request:"
    )
    for name, count in counts.items():
        print(f"  {name:<16}{count / 1000:>8.0f}k")
    ours, baseline = (counts[name] for name in SERVERS)
    print(
        f"the baseline spends {baseline / ours:.2f}x the user-space instructions of cvco-ipn serve per "
        "request (the kernel's work, about 3x the system calls for the baseline, not counted)"
    )
    if args.replicated:
        print(f"CVCO_REDIS_MIN_REPLICAS=1 costs {counts[REPLICATED] / ours:.3f}x the instructions of 0")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
