"""Durable enqueue of notification jobs, in arq's own format, batched across concurrent requests.

Each job is written as `ArqRedis.enqueue_job` writes it (`arq:job:<id>` with an expiry, then ZADD to the
queue with score = enqueue time in ms, skipped when the job or its result already exists), but by a Lua
script, so the check and the write are atomic in one round trip instead of WATCH/EXISTS/MULTI/EXEC.
Requests arriving together share that round trip: a single task drains the pending jobs, writes them with
one script call, and answers each request only once Redis has acknowledged its own job.

That task talks to Redis over a connection of its own, with EVALSHA, and bounds each call with one
`asyncio.timeout`: through the client's pool, every batch paid for a pool lock, a readiness poll of the
socket and a task per send (redis-py's `wait_for` around each write), about 20 us of CPU a batch.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from arq.constants import expires_extra_ms, job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError

from schemas import job as job_schema
from schemas.job import PROCESS_NOTIFICATION, QueuedNotification, notification_job_id

MAX_BATCH = 256
"""Jobs written by one script call at most; more wait for the next round trip."""

# KEYS: the queue, then the job key and result key of each job.
# ARGV: the expiry in ms, then the id, serialized job and score of each job. Returns 1 (written) or 0 per job.
ENQUEUE_SCRIPT = """
local written = {}
for i = 1, (#KEYS - 1) / 2 do
  local job_key, result_key, arg = KEYS[2 * i], KEYS[2 * i + 1], 3 * i - 1
  if redis.call('EXISTS', job_key, result_key) > 0 then
    written[i] = 0
  else
    redis.call('PSETEX', job_key, ARGV[1], ARGV[arg + 1])
    redis.call('ZADD', KEYS[1], ARGV[arg + 2], ARGV[arg])
    written[i] = 1
  end
end
return written
"""
ENQUEUE_SCRIPT_SHA = hashlib.sha1(ENQUEUE_SCRIPT.encode("ascii"), usedforsecurity=False).hexdigest()


class EnqueueUnavailable(Exception):
    """Redis did not acknowledge the job in time: nothing may be claimed to the sender."""


class NotReplicated(Exception):
    """Fewer replicas than `CVCO_REDIS_MIN_REPLICAS` acknowledged the batch in time."""


REPLICATION_MARK = "cvco:replication-mark"
"""Written before WAIT when a batch wrote nothing (duplicates only): WAIT counts replicas up to the
connection's last write, and the duplicate's own write may have been another receiver's, still unreplicated."""


@dataclass(frozen=True, slots=True)
class NotificationJob:
    """One serialized arq job, ready to write."""

    job_id: str
    payload: bytes
    enqueue_time_ms: int


def build_job(
    fields: Mapping[str, str], received_at: datetime, client_ip: str, request_id: str
) -> NotificationJob:
    """The arq job for a notification: `process_notification(QueuedNotification as JSON)`.

    The bytes are the dict arq's `serialize_job` builds, with `QueuedNotification.model_dump(mode="json")`
    as the argument, rendered by orjson: the worker decodes the same function, argument, try and enqueue
    time as from `serialize_job(..., serializer=schemas.job.dumps)`, at a tenth of the cost. No pydantic
    here: every value is a str the receiver made (or a UTC datetime), so the model's checks hold already.

    `fields` are what the signature covers (`ingest.body.signed_fields`), and the job's id is derived
    from them alone: unsigned extra fields (padding, any other name) cannot make copies of one
    notification distinct jobs.
    """
    enqueue_time_ms = int(time.time() * 1000)
    argument = {
        "fields": fields,
        "received_at": received_at,  # OPT_UTC_Z writes it as pydantic does: ISO 8601 ending in Z
        "client_ip": client_ip,
        "request_id": request_id,
    }
    job: dict[str, Any] = {
        "t": None,
        "f": PROCESS_NOTIFICATION,
        "a": [argument],
        "k": {},
        "et": enqueue_time_ms,
    }
    try:
        payload = orjson.dumps(job, option=orjson.OPT_UTC_Z)
    except orjson.JSONEncodeError:
        # orjson refuses what the stdlib accepts (a lone surrogate cannot come from a UTF-8 body, but
        # a caller might hand one): take arq's own path rather than fail the request
        payload = serialize_job(
            PROCESS_NOTIFICATION,
            (QueuedNotification.model_validate(argument).model_dump(mode="json"),),
            {},
            None,
            enqueue_time_ms,
            serializer=job_schema.dumps,
        )
    return NotificationJob(notification_job_id(fields), payload, enqueue_time_ms)


SWEEPS_PER_TIMEOUT = 8
"""How often, per timeout, waiting requests are checked against their deadline: at most timeout / 8 late."""


@dataclass(slots=True)
class _Pending:
    job: NotificationJob
    answer: asyncio.Future[bool]
    deadline: float


class JobWriter:
    """Writes jobs to the arq queue; `enqueue` returns True for a new job, False for a duplicate.

    `run()` is the single batching task; start it once and cancel it at shutdown.
    """

    def __init__(self, redis: Redis, queue_name: str, timeout_s: float, *, min_replicas: int = 0) -> None:
        pool = redis.connection_pool
        # the client's own connection settings (address, database, credentials, packing), without its
        # per-command socket timeout: `_call_script` bounds the whole exchange with one timeout instead
        self._connection = pool.connection_class(**{**pool.connection_kwargs, "socket_timeout": None})
        self._queue_name = queue_name
        self._timeout_s = timeout_s
        self._min_replicas = min_replicas
        self._pending: list[_Pending] = []
        self._writing: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._stopped = False

    async def enqueue(self, job: NotificationJob) -> bool:
        """Wait until Redis holds this job (True) or already held it (False); else `EnqueueUnavailable`."""
        if self._stopped:
            raise EnqueueUnavailable("the receiver is shutting down")
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[bool] = loop.create_future()
        # the deadline holds even while an earlier batch is stuck: `run()` sweeps waiting requests against
        # it, which costs far less than a timer armed and cancelled per request
        self._pending.append(_Pending(job, answer, loop.time() + self._timeout_s))
        self._wakeup.set()
        return await answer

    def _sweep(self) -> None:
        now = asyncio.get_running_loop().time()
        for waiting in (self._pending, self._writing):
            for pending in waiting:
                if pending.deadline <= now and not pending.answer.done():
                    pending.answer.set_exception(
                        EnqueueUnavailable(f"Redis did not answer within {self._timeout_s:g} s")
                    )

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._timeout_s / SWEEPS_PER_TIMEOUT)
            self._sweep()

    async def run(self) -> None:
        """Drain pending jobs batch by batch until cancelled."""
        sweeper = asyncio.create_task(self._sweep_forever(), name="cvco-enqueue-deadlines")
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while self._pending:
                    batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                    await self._write(batch)
        finally:
            self._stopped = True
            sweeper.cancel()
            for pending in (*self._pending, *self._writing):
                if not pending.answer.done():
                    pending.answer.set_exception(EnqueueUnavailable("the receiver is shutting down"))
            await self._connection.disconnect()

    async def _write(self, batch: list[_Pending]) -> None:
        live = [pending for pending in batch if not pending.answer.done()]
        if not live:
            return
        self._writing = live
        try:
            await self._write_live(live)
        finally:
            self._writing = []

    async def _write_live(self, live: list[_Pending]) -> None:
        keys: list[str] = [self._queue_name]
        args: list[bytes | int | str] = [expires_extra_ms]
        for pending in live:
            job = pending.job
            keys += (job_key_prefix + job.job_id, result_key_prefix + job.job_id)
            args += (job.job_id, job.payload, job.enqueue_time_ms)
        try:
            written = await self._call_script(keys, args)
            if self._min_replicas:
                await self._await_replicas(min(pending.deadline for pending in live), wrote=any(written))
        except (RedisError, OSError, TimeoutError, NotReplicated) as e:
            reason = str(e) if isinstance(e, NotReplicated) else f"Redis unavailable: {type(e).__name__}"
            for pending in live:
                if not pending.answer.done():
                    pending.answer.set_exception(EnqueueUnavailable(reason))
            return
        for pending, was_written in zip(live, written, strict=True):
            if not pending.answer.done():
                pending.answer.set_result(bool(was_written))

    async def _await_replicas(self, deadline: float, *, wrote: bool) -> None:
        """`WAIT` on the connection that wrote the batch, until the first request's deadline.

        A 200 then means "on the primary and `min_replicas` replicas": a failover loses none of them.
        """
        remaining_ms = int((deadline - asyncio.get_running_loop().time()) * 1000)
        if remaining_ms <= 0:
            raise NotReplicated("no time left to wait for the replicas")
        connection = self._connection
        async with asyncio.timeout(self._timeout_s):
            if not wrote:
                await connection.send_command("SET", REPLICATION_MARK, "1", "PX", 60_000)
            await connection.send_command("WAIT", self._min_replicas, remaining_ms)
            if not wrote:
                await connection.read_response()
            acknowledged: int = await connection.read_response()
        if acknowledged < self._min_replicas:
            raise NotReplicated(f"{acknowledged} of {self._min_replicas} replicas acknowledged in time")

    async def _call_script(self, keys: list[str], args: list[bytes | int | str]) -> list[int]:
        """The script's answer for these keys and arguments, within the timeout.

        A connection cut short by the timeout or an error is closed by redis-py (its reply may still
        come) and opened again by the next call. One that Redis closed while it sat idle (a restart, a
        `timeout` setting) is only found out by using it: that call is made once more on a fresh
        connection, which is safe, since a job the first try did write comes back as already there.
        """
        async with asyncio.timeout(self._timeout_s):
            try:
                return await self._script_reply(keys, args)
            except RedisConnectionError:
                return await self._script_reply(keys, args)

    async def _script_reply(self, keys: list[str], args: list[bytes | int | str]) -> list[int]:
        connection = self._connection
        await connection.send_command("EVALSHA", ENQUEUE_SCRIPT_SHA, len(keys), *keys, *args)
        try:
            written: list[int] = await connection.read_response()
        except NoScriptError:
            # a restarted or flushed Redis forgot the script: send it whole, which caches it again
            await connection.send_command("EVAL", ENQUEUE_SCRIPT, len(keys), *keys, *args)
            written = await connection.read_response()
        return written
