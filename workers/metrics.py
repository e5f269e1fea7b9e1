"""Prometheus metrics of one worker, served by `cvco-ipn worker --metrics-port P` on `GET /metrics`.

Each worker has its own `WorkerMetrics` (and registry), handed to its jobs and crons in arq's `ctx`.
deploy/prometheus/ writes its alerts and panels against these names. A worker cannot report its own
absence: "no worker alive" is Prometheus finding no worker's metrics at all (`CvcoNoWorkerAlive`).
"""

from __future__ import annotations

from typing import Literal, get_args

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from schemas.event import EventType

JobResult = Literal["published", "duplicate", "stale", "waiting", "retried", "parked"]

JOB_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class WorkerMetrics:
    """Jobs by result, job duration, events published by type, parked jobs, alert mails sent and failed."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.jobs = Counter(
            "cvco_worker_jobs", "Notification jobs by result", ["result"], registry=self.registry
        )
        self.job_seconds = Histogram(
            "cvco_worker_job_seconds",
            "Time a notification job ran",
            buckets=JOB_BUCKETS,
            registry=self.registry,
        )
        self.events = Counter(
            "cvco_worker_events_published", "Events published by type", ["type"], registry=self.registry
        )
        self.parked = Counter("cvco_worker_parked", "Jobs parked as failed", registry=self.registry)
        self.alerts = Counter(
            "cvco_worker_alerts", "Alert e-mails by result (sent, failed)", ["result"], registry=self.registry
        )
        # every label value exposed from the start, at 0: a rate over a series that appears later misses
        # its first increase, and an alert on `failed` needs the series to exist
        for result in get_args(JobResult):
            self.jobs.labels(result)
        for event_type in get_args(EventType):
            self.events.labels(event_type)
        for result in ("sent", "failed"):
            self.alerts.labels(result)

    def count_job(self, result: JobResult, seconds: float, event_type: str | None = None) -> None:
        """One run of a notification job: what it did, how long it ran, the event it published if any."""
        self.jobs.labels(result).inc()
        self.job_seconds.observe(seconds)
        if event_type is not None:
            self.events.labels(event_type).inc()
        if result == "parked":
            self.parked.inc()

    def count_alert(self, *, sent: bool) -> None:
        self.alerts.labels("sent" if sent else "failed").inc()

    def serve(self, host: str, port: int) -> None:
        """Serve `GET /metrics` from a thread of its own (prometheus_client's server); OSError if the port is taken."""
        start_http_server(port, addr=host, registry=self.registry)
