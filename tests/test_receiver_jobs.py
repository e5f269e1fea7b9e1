"""The receiver's hand-built job bytes equal what arq gives, and job ids collapse exactly the copies of one
signed notification."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from arq.jobs import deserialize_job, serialize_job
from hypothesis import given
from hypothesis import strategies as st

from ingest.enqueue import build_job
from schemas import job as job_schema
from schemas.job import PROCESS_NOTIFICATION, QueuedNotification, notification_job_id

field_maps = st.builds(
    lambda fields, signature: fields | {"signature": signature},
    st.dictionaries(st.text(min_size=1), st.text(), max_size=30),
    st.text(),
)
utc_datetimes = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@given(fields=field_maps, received_at=utc_datetimes, client_ip=st.text(), request_id=st.text())
def test_built_job_decodes_as_arqs_own_serialize_job(
    fields: dict[str, str], received_at: datetime, client_ip: str, request_id: str
) -> None:
    """arq's deserialize_job reads the same function, argument, try and enqueue time from both encodings."""
    job = build_job(fields, received_at, client_ip, request_id)
    notification = QueuedNotification(
        fields=fields, received_at=received_at, client_ip=client_ip, request_id=request_id
    )
    reference = serialize_job(
        PROCESS_NOTIFICATION,
        (notification.model_dump(mode="json"),),
        {},
        None,
        job.enqueue_time_ms,
        serializer=job_schema.dumps,
    )
    ours = deserialize_job(job.payload, deserializer=job_schema.loads)
    theirs = deserialize_job(reference, deserializer=job_schema.loads)
    assert (ours.function, ours.args, ours.kwargs, ours.job_try, ours.enqueue_time) == (
        theirs.function,
        theirs.args,
        theirs.kwargs,
        theirs.job_try,
        theirs.enqueue_time,
    )
    assert list(ours.args[0]["fields"]) == list(fields)
    assert QueuedNotification.model_validate(ours.args[0]) == notification
    assert job.job_id == notification_job_id(fields)


def test_built_job_is_timestamped_now_in_milliseconds() -> None:
    """The job's enqueue time (the queue score) is the current time in ms, as arq's enqueue_job sets it."""
    before = datetime.now(UTC)
    job = build_job({"vads_site_id": "1", "signature": "s"}, before, "127.0.0.1", "r")
    decoded = deserialize_job(job.payload, deserializer=job_schema.loads)
    assert before - timedelta(milliseconds=1) <= decoded.enqueue_time <= datetime.now(UTC)
    assert decoded.enqueue_time == datetime.fromtimestamp(job.enqueue_time_ms / 1000, UTC)


def test_received_at_without_microseconds_is_written_as_pydantic_writes_it() -> None:
    """A whole-second UTC time keeps pydantic's JSON form (no fraction, Z suffix), byte for byte."""
    received_at = datetime(2026, 3, 1, 10, 15, tzinfo=UTC)
    job = build_job({"signature": "s"}, received_at, "::1", "r")
    assert json.loads(job.payload)["a"][0]["received_at"] == "2026-03-01T10:15:00Z"


@given(fields=field_maps, data=st.data())
def test_job_id_depends_on_the_fields_not_their_order(fields: dict[str, str], data: st.DataObject) -> None:
    """The same fields in any order give the same id: a resend collapses whatever order its body had."""
    shuffled = dict(data.draw(st.permutations(list(fields.items()))))
    assert notification_job_id(shuffled) == notification_job_id(fields)


@given(fields=field_maps, other=field_maps)
def test_the_id_is_the_signed_contents(fields: dict[str, str], other: dict[str, str]) -> None:
    """Two notifications share an id exactly when they share a signature, the digest of their signed
    values: unsigned fields, padding or a renamed field cannot make copies distinct, and two different
    signed contents (different signatures) never collapse."""
    same_signature = other | {"signature": fields["signature"]}
    assert notification_job_id(same_signature) == notification_job_id(fields)
    if other["signature"] != fields["signature"]:
        assert notification_job_id(other) != notification_job_id(fields)
    assert notification_job_id(fields).startswith("ipn:")
