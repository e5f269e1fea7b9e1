"""The receiver's hand-built job bytes equal what arq gives, and job ids collapse exactly the identical notifications."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from arq.jobs import deserialize_job, serialize_job
from hypothesis import given
from hypothesis import strategies as st

from ingest.enqueue import build_job
from schemas import job as job_schema
from schemas.job import PROCESS_NOTIFICATION, QueuedNotification, notification_job_id

field_maps = st.dictionaries(st.text(min_size=1), st.text(), max_size=30)
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
    job = build_job({"vads_site_id": "1"}, before, "127.0.0.1", "r")
    decoded = deserialize_job(job.payload, deserializer=job_schema.loads)
    assert before - timedelta(milliseconds=1) <= decoded.enqueue_time <= datetime.now(UTC)
    assert decoded.enqueue_time == datetime.fromtimestamp(job.enqueue_time_ms / 1000, UTC)


def test_received_at_without_microseconds_is_written_as_pydantic_writes_it() -> None:
    """A whole-second UTC time keeps pydantic's JSON form (no fraction, Z suffix), byte for byte."""
    received_at = datetime(2026, 3, 1, 10, 15, tzinfo=UTC)
    job = build_job({}, received_at, "::1", "r")
    assert json.loads(job.payload)["a"][0]["received_at"] == "2026-03-01T10:15:00Z"


@given(fields=field_maps, data=st.data())
def test_job_id_depends_on_the_fields_not_their_order(fields: dict[str, str], data: st.DataObject) -> None:
    """The same fields in any order give the same id: a resend collapses whatever order its body had."""
    shuffled = dict(data.draw(st.permutations(list(fields.items()))))
    assert notification_job_id(shuffled) == notification_job_id(fields)


@given(fields=field_maps.filter(bool), data=st.data())
def test_any_change_to_a_name_or_a_value_gives_another_id(
    fields: dict[str, str], data: st.DataObject
) -> None:
    """Different notifications never collapse: changing, adding or dropping any field changes the id."""
    name = data.draw(st.sampled_from(sorted(fields)))
    changed = dict(fields)
    how = data.draw(st.sampled_from(["value", "drop", "add", "rename"]))
    if how == "value":
        changed[name] = data.draw(st.text().filter(lambda value: value != fields[name]))
    elif how == "drop":
        del changed[name]
    elif how == "add":
        changed[data.draw(st.text(min_size=1).filter(lambda new: new not in fields))] = ""
    else:
        changed[data.draw(st.text(min_size=1).filter(lambda new: new not in fields))] = changed.pop(name)
    assert notification_job_id(changed) != notification_job_id(fields)


def test_a_lone_surrogate_still_gets_a_stable_id() -> None:
    """orjson refuses a lone surrogate (never from a UTF-8 body, but a caller may pass one): the stdlib's
    form is hashed instead, the same each time and distinct from its neighbours'."""
    first = notification_job_id({"vads_x": "\ud800"})
    assert first == notification_job_id({"vads_x": "\ud800"})
    assert first != notification_job_id({"vads_x": "\ud801"})
    assert first.startswith("ipn:")


def test_a_value_orjson_refuses_still_becomes_arqs_own_job() -> None:
    """A lone surrogate (never from a UTF-8 body, but a caller may pass one) takes arq's serialize_job path."""
    received_at = datetime(2026, 3, 1, 10, 15, tzinfo=UTC)
    job = build_job({"vads_x": "\ud800"}, received_at, "::1", "r")
    decoded = deserialize_job(job.payload, deserializer=job_schema.loads)
    assert decoded.function == PROCESS_NOTIFICATION
    assert decoded.args[0]["fields"] == {"vads_x": "\ud800"}
    assert decoded.args[0]["received_at"] == "2026-03-01T10:15:00Z"
