"""A kept refusal run through the receiver's checks again, with the current configuration (a shop added, a
key corrected), and queued as if the platform had just sent it: `cvco-ipn rejected retry` and the console."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from redis.asyncio import Redis

from ingest.body import parse_form_body, signed_fields
from ingest.checks import check_notification
from ingest.enqueue import JobWriter, NotificationJob, build_job
from ingest.network import is_allowed
from ingest.rejected_store import RejectedRequest, remove_rejected
from ingest.rejections import Rejected
from schemas.settings import Settings


def recheck(entry: RejectedRequest, settings: Settings) -> NotificationJob:
    """The job the receiver would queue for this kept request now; raises `Rejected` or `BodyError`, as
    the receiver would refuse it."""
    if not is_allowed(entry.client_ip, settings.ipn_allowlist):
        raise Rejected(403, "forbidden", "address not allowed")
    fields = parse_form_body(entry.body)
    check_notification(fields, settings)
    return build_job(signed_fields(entry.body, fields), datetime.now(UTC), entry.client_ip, entry.request_id)


@contextlib.asynccontextmanager
async def job_writer(redis: Redis, settings: Settings) -> AsyncIterator[JobWriter]:
    """The receiver's job writer, running for the length of the block."""
    writer = JobWriter(redis, settings.queue_name, settings.redis_timeout_s)
    writing = asyncio.create_task(writer.run(), name="cvco-job-writer")
    try:
        yield writer
    finally:
        writing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writing


async def requeue(redis: Redis, writer: JobWriter, entry: RejectedRequest, job: NotificationJob) -> bool:
    """Queue the job `recheck` gave and drop the kept request: True when new, False when already queued."""
    written = await writer.enqueue(job)
    await remove_rejected(redis, entry)
    return written
