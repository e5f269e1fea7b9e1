"""`cvco-ipn worker --metrics-port P`: jobs by result, job duration, events by type, parked jobs and alert
mails, read as Prometheus reads them, from a real worker process."""

from __future__ import annotations

import asyncio
import subprocess
import urllib.request

from arq.connections import ArqRedis
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from schemas.settings import Settings, ShopConfig
from tests.cli_process import CVCO_IPN, SHOPS_JSON, cli_env
from tests.conftest import SmtpServer, free_port
from tests.notifications import enqueue_notification, notification, queued
from tests.test_alerts import mail_settings, park
from workers.alerts import deliver_alerts
from workers.metrics import WorkerMetrics


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, by name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    def get() -> str:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/metrics", timeout=5
        ) as response:  # a local test URL
            text: str = response.read().decode()
            return text

    return samples(await asyncio.to_thread(get))


async def test_a_running_worker_counts_what_its_jobs_did(
    pool: ArqRedis, redis: Redis, settings: Settings, shop: ShopConfig
) -> None:
    """An accepted payment, its exact resend and an unparsable notification: published, duplicate and
    parked, one event of its type, one parked job, each job timed."""
    port = free_port()
    worker = await asyncio.create_subprocess_exec(
        *(CVCO_IPN, "worker", "--metrics-port", str(port), "--metrics-host", "127.0.0.1"),
        env=cli_env(CVCO_SHOPS=SHOPS_JSON, CVCO_STREAM=settings.stream, CVCO_MAX_TRIES="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        accepted = queued(notification("AUTHORISED"), shop)
        await enqueue_notification(pool, settings, accepted)
        resend = accepted.model_copy(update={"request_id": "resend"})  # another job id: the same notification
        await pool.enqueue_job(
            "process_notification",
            resend.model_dump(mode="json"),
            _job_id="ipn:resend",
            _queue_name=settings.queue_name,
        )
        broken = notification("AUTHORISED", trans_id="bad001", uuid="b" * 32)
        del broken["vads_trans_date"]
        await enqueue_notification(pool, settings, queued(broken, shop))
        jobs = ("cvco_worker_jobs_total", "result")
        for _ in range(200):
            try:
                seen = await scrape(port)
            except OSError:  # not listening yet
                seen = {}
            done = sum(value for (name, labels), value in seen.items() if name == jobs[0])
            if done >= 3:
                break
            await asyncio.sleep(0.05)
        assert seen[(jobs[0], ((jobs[1], "published"),))] == 1
        assert seen[(jobs[0], ((jobs[1], "duplicate"),))] == 1
        assert seen[(jobs[0], ((jobs[1], "parked"),))] == 1
        assert seen[("cvco_worker_parked_total", ())] == 1
        assert seen[("cvco_worker_job_seconds_count", ())] == 3
        published = {
            dict(labels)["type"]: value
            for (name, labels), value in seen.items()
            if name == "cvco_worker_events_published_total" and value
        }
        assert published == {"payment.accepted": 1}
    finally:
        worker.terminate()
        assert await asyncio.wait_for(worker.wait(), 30) == 0


async def test_alert_mails_are_counted_sent_and_failed(
    redis: Redis, settings: Settings, smtp_server: SmtpServer
) -> None:
    metrics = WorkerMetrics()
    down = mail_settings(settings, f"smtp://127.0.0.1:{free_port()}")
    await park(redis, down, "ipn:while-down")
    assert await deliver_alerts(redis, down, metrics=metrics) == 0
    assert await deliver_alerts(redis, mail_settings(settings, smtp_server.url), metrics=metrics) == 1
    seen = samples(generate_latest(metrics.registry).decode())
    assert seen[("cvco_worker_alerts_total", (("result", "failed"),))] == 1
    assert seen[("cvco_worker_alerts_total", (("result", "sent"),))] == 1
