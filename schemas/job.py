"""What the receiver queues and the worker runs: one arq job per authenticated notification.

Jobs are JSON, never pickle: the same `dumps`/`loads` are given to the receiver's pool and to the worker.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict

PROCESS_NOTIFICATION = "process_notification"
"""The arq function name of the notification job."""


class QueuedNotification(BaseModel):
    """A notification exactly as received, with where and when it came from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fields: dict[str, str]
    received_at: datetime
    client_ip: str
    request_id: str


def notification_job_id(fields: Mapping[str, str]) -> str:
    """Same signed content, same id: arq refuses a job whose id is already queued, so copies collapse.

    The signature is the signed content's digest (an HMAC of every `vads_` value under the shop's key),
    so the id is derived from it alone: padding, unsigned fields or a renamed field that sorts to the same
    place cannot make copies of one notification distinct jobs, and a changed value (re-signed) always
    gives another. Hashed, for an id of hex digits whatever the algorithm (base64 has `/` and `+`).
    """
    return "ipn:" + hashlib.sha256(fields["signature"].encode("utf-8")).hexdigest()


def dumps(value: Any) -> bytes:
    """arq's job serializer: compact JSON, by orjson (the stdlib for what orjson refuses, such as an
    integer over 64 bits)."""
    try:
        return orjson.dumps(value, default=str)
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"), default=str).encode("utf-8")


def loads(data: bytes) -> Any:
    """arq's job deserializer."""
    return orjson.loads(data)
