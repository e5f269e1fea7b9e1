"""Full load run through the load balancer: nginx + 2 receivers + 2 workers + Redis (AOF), all on loopback.

    .venv/bin/python -m tests.perf.load_lb [--rate 1000] [--seconds 60] [--receivers 2] [--workers 2]

Sends rate x seconds `cvco-full` notifications with `cvco-ipn simulate`, waits until the workers have
drained the queue, and prints the accounting as JSON: sent, accepted, events, distinct event ids,
duplicates, queued, parked, answer-time p50/p99, achieved rate, drain time. Exits 1 if anything is lost
or duplicated. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from tests.reliability.accounting import tally, wait_for_events
from tests.reliability.processes import Cluster


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000, help="notifications per second")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--receivers", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=200, help="simulator connections")
    args = parser.parse_args()
    count = args.rate * args.seconds
    with tempfile.TemporaryDirectory(prefix="cvco-load-") as workdir, Cluster(Path(workdir)) as cluster:
        cluster.start_redis(aof=True)
        receivers = [
            cluster.start_receiver(CVCO_TRUSTED_PROXIES="127.0.0.1/32") for _ in range(args.receivers)
        ]
        nginx = cluster.start_nginx([r.port or 0 for r in receivers])
        for _ in range(args.workers):
            cluster.start_worker()
        started = time.monotonic()
        summary = cluster.simulate(
            f"http://127.0.0.1:{nginx.port}/ipn",
            *("--scenario", "cvco-full", "--count", str(count), "--rate", str(args.rate)),
            *("--concurrency", str(args.concurrency), "--timeout", "10"),
            *("--retries", "10", "--retry-interval", "2"),
            timeout_s=args.seconds * 5 + 120,
        )
        events = wait_for_events(cluster, count, timeout_s=600)
        drained_s = time.monotonic() - started
        result = tally(cluster)
    total = summary["total"]
    assert isinstance(total, dict)
    elapsed = float(str(summary["elapsed_s"]))
    report = {
        "target": {"rate": args.rate, "seconds": args.seconds, "notifications": count},
        "simulator": total,
        "latency_ms": summary["latency_ms"],
        "send_elapsed_s": elapsed,
        "achieved_rate": round(total["sent"] / elapsed, 1) if elapsed else None,
        "all_events_after_s": round(drained_s, 1),
        "processing_rate": round(events / drained_s, 1),
        "accounting": vars(result),
    }
    print(json.dumps(report, indent=2))
    intact = (
        total["accepted"] == result.events == result.unique_event_ids == result.payments
        and result.duplicate_payments == 0
        and result.queued == result.parked == total["failed"] == 0
    )
    return 0 if intact else 1


if __name__ == "__main__":
    sys.exit(main())
