"""Workers killed with `kill -9` mid-run: every payment's history still agrees with its state and events.

The history is written by the same script as the state, so a kill lands either before both or after
both: a job whose write landed and whose worker died before arq saw it end runs again and is recorded as
the duplicate it then is, never as a second publication, and no applied notification is missing.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import cast

import pytest
from redis import Redis

from tests.conftest import SHOP_ID
from tests.reliability.accounting import STREAM, wait_for_events
from tests.reliability.conftest import scale
from tests.reliability.notifications import accepted_payment
from tests.reliability.processes import Cluster, shop_config, wait_until
from tests.reliability.test_payment_outcomes import post
from workers.history import read_entry
from workers.record import StoredRecord, decode_state, parse_record

PAYMENTS = scale(ci=400, full=2000)
KILLS = 2


def _in_progress(redis: Redis) -> int:
    return len(cast(list[bytes], redis.keys("arq:in-progress:*")))


def _record(redis: Redis, key: str) -> StoredRecord:
    raw = redis.get(f"cvco:payment:{key}")
    assert raw is not None, key
    return parse_record(cast(bytes, raw))


@pytest.mark.timeout(scale(ci=150, full=400))
def test_history_holds_exactly_the_applied_notifications_after_kill_9(cluster: Cluster) -> None:
    """Each payment notified once (PAY) and every third also redelivered (RETRY); the only worker is
    killed twice mid-run, then two workers finish. For every payment: the history has each delivery
    sent, exactly one `published` entry naming the stream's one event for it (event id and stream id),
    the rest `duplicate`, a write count of one, and the state's phase that event announced.
    """
    cluster.start_redis()
    receiver = cluster.start_receiver()
    url = f"http://127.0.0.1:{receiver.port}/ipn"
    sent: dict[str, Counter[str]] = {}
    for index in range(PAYMENTS):
        fields = accepted_payment(index, SHOP_ID, shop_config())
        unsigned = {name: value for name, value in fields.items() if name != "signature"}
        key = f"{SHOP_ID}:TEST:{fields['vads_trans_date'][:8]}:{fields['vads_trans_id'].lower()}"
        sent[key] = Counter(["PAY"])
        assert post(url, unsigned) == 200
        if index % 3 == 0:
            assert post(url, {**unsigned, "vads_url_check_src": "RETRY"}) == 200
            sent[key]["RETRY"] += 1
    redis = Redis.from_url(cluster.redis_url)
    orphans = []
    try:
        for kill in range(1, KILLS + 1):
            worker = cluster.start_worker()
            threshold = kill * PAYMENTS // (KILLS + 2)
            wait_until(
                lambda: cast(int, redis.xlen(STREAM)) >= threshold and _in_progress(redis) > 0,  # noqa: B023  # polled before the next iteration
                60,
                f"{threshold} events, jobs in progress",
                0.005,
            )
            worker.kill()
            orphans.append(_in_progress(redis))
        held = cast(list[bytes], redis.keys("arq:in-progress:*"))
        comeback_s = max([0, *(cast(int, redis.pttl(key)) for key in held)]) / 1000
        cluster.start_worker()
        cluster.start_worker()
        # the queue empties only once every orphan ran again: the RETRY copies too
        assert wait_for_events(cluster, PAYMENTS, timeout_s=comeback_s + 60) == PAYMENTS

        events = {
            json.loads(fields[b"event"])["trans_uuid"]: (stream_id.decode(), json.loads(fields[b"event"]))
            for stream_id, fields in cast(list[tuple[bytes, dict[bytes, bytes]]], redis.xrange(STREAM))
        }
        reruns = 0
        for key, deliveries in sent.items():
            record = _record(redis, key)
            assert record.version == "1", key
            state = decode_state(key, record.state)
            history = [read_entry(state, entry) for entry in record.entries]
            (published,) = [entry for entry in history if entry["did"] == "published"]
            stream_id, event = events[published["uuid"]]
            assert (published["eid"], published["sid"], published["ev"]) == (
                event["event_id"],
                stream_id,
                event["type"],
            )
            assert event["type"] == f"payment.{state.phase}"
            seen = Counter(entry["src"] for entry in history)
            assert set(seen) == set(deliveries) and all(seen[src] >= n for src, n in deliveries.items()), key
            assert all(entry["did"] == "duplicate" for entry in history if entry is not published)
            reruns += sum(seen.values()) - sum(deliveries.values())
    finally:
        redis.close()
    print(f"history crash: {PAYMENTS} payments, orphans per kill {orphans}, re-run jobs recorded {reruns}")
    assert sum(orphans) > 0, "no kill interrupted a job: the test proved nothing"
    assert len(events) == PAYMENTS
