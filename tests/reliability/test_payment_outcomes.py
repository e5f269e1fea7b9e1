"""Issue 15's cases end to end: `POST /ipn` to a real receiver, two real worker processes, real Redis.

Each case is delivered twice on two payments: once in the order that went wrong (each notification
processed before the next is sent), once all at once from parallel connections with duplicates. Both
must end in the same payment state and the same last event, and that state must be the right one.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlencode

import pytest
from redis import Redis

from core.signature import sign_fields
from schemas.notification import parse_notification, payment_key
from tests.notifications import UUID_CB, UUID_PAY, UUID_REFUND, cascade, leg, notification
from tests.reliability.accounting import QUEUE, STREAM, read_events
from tests.reliability.processes import Cluster, Service, shop_config, shops_json, wait_until
from workers.payment import PaymentState
from workers.record import decode_state, parse_record

pytestmark = pytest.mark.timeout(240)
UUID_SECOND = "d" * 32
Fields = dict[str, str]


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, str]]:
    """Redis, one receiver, two workers; a silent session expires at the first sweep after it is seen, a
    Back Office refund waits 3 s for its payment, looking every second."""
    with Cluster(tmp_path_factory.mktemp("outcomes")) as cluster:
        cluster.settings_env.update(
            CVCO_SESSION_TIMEOUT_S="1",
            CVCO_SESSION_GRACE_S="0",
            CVCO_REFUND_WAIT_S="3",
            CVCO_REFUND_RETRY_S="1",
        )
        cluster.start_redis()
        receiver = cluster.start_receiver()
        cluster.start_worker()
        cluster.start_worker()
        yield cluster, f"http://127.0.0.1:{receiver.port}/ipn"


def of_payment(fields: Fields, trans_id: str) -> Fields:
    """The same notification for another payment (its own trans_id and order id), cascade legs included."""
    changed = {**fields, "vads_trans_id": trans_id, "vads_order_id": f"order-{trans_id}"}
    if "vads_payment_seq" in fields:
        seq = json.loads(fields["vads_payment_seq"])
        seq["trans_id"] = trans_id
        for item in seq["transactions"]:
            item["trans_id"] = trans_id
        changed["vads_payment_seq"] = json.dumps(seq)
    return changed


def post(url: str, fields: Fields) -> int:
    signed = {**fields, "signature": sign_fields(fields, shop_config(), fields["vads_ctx_mode"])}
    request = urllib.request.Request(url, data=urlencode(signed).encode(), method="POST")  # noqa: S310  # loopback URL built here
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310  # loopback URL built here
            return cast(int, response.status)
    except urllib.error.HTTPError as e:
        return e.code


def quiet(redis: Redis) -> None:
    """Wait until every queued notification has been processed (queue empty, no notification job running)."""

    def drained() -> bool:
        running = cast(list[bytes], redis.keys("arq:in-progress:*"))
        return redis.zcard(QUEUE) == 0 and all(key.split(b":")[2].startswith(b"cvco_") for key in running)

    wait_until(drained, 60, "workers drained the queue")


def key_of(fields: Fields) -> str:
    note = parse_notification(fields)
    return payment_key(note.site_id, note.ctx_mode, note.trans_date, note.trans_id)


def state_of(redis: Redis, key: str) -> PaymentState:
    raw = redis.get(f"cvco:payment:{key}")
    assert raw is not None, f"no state for {key}"
    return decode_state(key, parse_record(cast(bytes, raw)).state)


def events_of(redis: Redis, key: str) -> list[dict[str, Any]]:
    return [event for event in read_events(redis, STREAM) if event["payment_key"] == key]


def deliver(
    system: tuple[Cluster, str], notes: list[Fields], trans_id: str, *, together: bool = False
) -> tuple[PaymentState, list[dict[str, Any]]]:
    """The notifications for payment `trans_id`, each processed before the next is sent, or `together`:
    each posted twice, all from parallel connections. The final state and the payment's events.
    """
    cluster, url = system
    redis = Redis.from_url(cluster.redis_url)
    notes = [of_payment(fields, trans_id) for fields in notes]
    if together:
        with ThreadPoolExecutor(max_workers=8) as pool:
            assert set(pool.map(lambda fields: post(url, fields), notes + notes[::-1])) == {200}
    for fields in [] if together else notes:
        assert post(url, fields) == 200
        quiet(redis)
    quiet(redis)
    key = key_of(notes[0])
    return state_of(redis, key), events_of(redis, key)


def both_ways(
    system: tuple[Cluster, str], notes: list[Fields], name: str
) -> tuple[PaymentState, list[dict[str, Any]]]:
    """The case in its order and all at once: same state, same last event; returns the ordered run."""
    first, second = f"{name:0<5}1", f"{name:0<5}2"
    ordered, ordered_events = deliver(system, notes, first)
    burst, burst_events = deliver(system, notes, second, together=True)
    assert anonymous(ordered, first) == anonymous(burst, second)
    last = ("type", "amount", "paid_amount", "cvco_amount", "refunded_amount", "flags")
    assert [ordered_events[-1][k] for k in last] == [burst_events[-1][k] for k in last]
    assert len({e["event_id"] for e in ordered_events}) == len(ordered_events)
    assert len({e["event_id"] for e in burst_events}) == len(burst_events)
    return ordered, ordered_events


def anonymous(state: PaymentState, trans_id: str) -> str:
    """The state as sorted JSON with its trans_id (in either case) blanked: two payments' states compared."""
    text = json.dumps(state.model_dump(), sort_keys=True)
    return text.replace(trans_id, "<id>").replace(trans_id.lower(), "<id>")


def types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


def logged(cluster: Cluster, *texts: str) -> bool:
    """A worker logged a line holding all these texts."""
    logs = "".join(s.log_text() for s in cluster.services if s.name.startswith("worker"))
    return any(all(text in line for text in texts) for line in logs.splitlines())


def alerted(cluster: Cluster, kind: str, key: str) -> bool:
    """A worker logged an alert of this kind for this payment (mail is not configured here)."""
    return logged(cluster, f'"kind":"{kind}"', key)


@pytest.mark.parametrize("source", ["RETRY", "BO"])
def test_1_a_cancel_redelivered_by_retry_or_bo_cancels_and_its_original_is_a_duplicate(
    system: tuple[Cluster, str], source: str
) -> None:
    cancel = notification("CANCELLED", source="MERCH_BO", auth=None, operation=None)
    notes = [notification("AUTHORISED"), {**cancel, "vads_url_check_src": source}, cancel]
    state, events = both_ways(system, notes, f"C1{source[0]}")
    assert state.phase == "cancelled" and state.paid_amount == 0
    assert types(events) == ["payment.accepted", "payment.cancelled"] and events[-1]["source"] == source


def test_2_the_accepted_second_attempt_wins_in_either_order(system: tuple[Cluster, str]) -> None:
    refused = notification("REFUSED", auth="1016")
    second = notification("AUTHORISED", uuid=UUID_SECOND, extra={"vads_sequence_number": "2"})
    state, events = both_ways(system, [refused, second], "C2a")
    assert types(events) == ["payment.refused", "payment.accepted"] and state.paid_amount == 5000
    state, events = both_ways(system, [second, refused], "C2b")
    assert types(events) == ["payment.accepted"] and state.phase == "accepted"


def test_3_a_refund_first_waits_for_its_payment_and_a_bo_refund_attaches_by_order_in_either_order(
    system: tuple[Cluster, str],
) -> None:
    refund = notification("CAPTURED", amount=2000, uuid=UUID_REFUND, operation="CREDIT", source="MERCH_BO")
    notes = [refund, notification("AUTHORISED"), notification("CAPTURED", source="BATCH")]
    state, events = both_ways(system, notes, "C3a")
    assert (state.phase, state.paid_amount, state.refunded_amount) == ("refunded", 5000, 2000)
    assert types(events)[-1] == "payment.refunded" and "partial_refund" in events[-1]["flags"]

    cluster, url = system
    redis = Redis.from_url(cluster.redis_url)
    paid, _ = deliver(system, [notification("CAPTURED")], "C3b001")
    own_refund = {
        **refund,
        "vads_trans_id": "912345",
        "vads_trans_date": "20240503093000",
        "vads_amount": "5000",
    }
    own_refund = {**own_refund, "vads_effective_amount": "5000", "vads_order_id": "order-C3b001"}
    assert post(url, own_refund) == 200
    quiet(redis)
    attached = state_of(redis, paid.key)
    assert (attached.phase, attached.refunded_amount, attached.flags) == ("refunded", 5000, [])
    assert events_of(redis, key_of(own_refund)) == []
    assert events_of(redis, paid.key)[-1]["trans_id"] == "912345"

    # the same refund processed before its payment: it waits, then ends exactly as above
    assert post(url, {**own_refund, "vads_order_id": "order-C3c001"}) == 200
    wait_until(lambda: logged(cluster, '"event":"refund_waiting"', "order-C3c001"), 10, "the refund waits")
    waited, _ = deliver(system, [notification("CAPTURED")], "C3c001")
    assert anonymous(waited, "C3c001") == anonymous(attached, "C3b001")
    assert types(events_of(redis, waited.key)) == types(events_of(redis, paid.key))

    orphan = {**own_refund, "vads_trans_id": "954321", "vads_order_id": "order-nowhere"}
    assert post(url, orphan) == 200
    quiet(redis)
    [alone] = events_of(redis, key_of(orphan))
    assert (alone["type"], alone["paid_amount"], alone["flags"]) == (
        "payment.refunded",
        0,
        ["refund_unattached"],
    )
    wait_until(lambda: alerted(cluster, "refund_unattached", key_of(orphan)), 10, "the refund is alerted")


def test_4_a_partial_cancel_is_flagged_and_alerted(system: tuple[Cluster, str]) -> None:
    lowered = notification("AUTHORISED", amount=3000, source="MERCH_BO")
    state, events = both_ways(system, [notification("AUTHORISED"), lowered], "C4")
    assert (state.phase, state.paid_amount, state.flags) == ("accepted", 3000, ["partial_cancel"])
    assert types(events) == ["payment.accepted", "payment.accepted"] and events[-1]["flags"] == [
        "partial_cancel"
    ]
    alert = lambda: alerted(system[0], "seed_rule_broken", state.key)  # noqa: E731  # a condition to wait on
    wait_until(alert, 10, "the partial cancel is alerted")


def test_5_a_pending_refund_first_is_kept_not_parked(system: tuple[Cluster, str]) -> None:
    pending = notification(
        "REFUND_TO_RETRY", uuid=UUID_REFUND, operation="CREDIT", source="MERCH_BO", auth=None
    )
    done = {**pending, "vads_trans_status": "CAPTURED", "vads_auth_result": "0"}
    notes = [pending, notification("CAPTURED"), done]
    state, events = both_ways(system, notes, "C5")
    assert (state.phase, state.refunded_amount) == ("refunded", 5000)
    cluster, _ = system
    assert Redis.from_url(cluster.redis_url).zcard("cvco:failed:index") == 0


def test_6_partially_authorised_is_accepted_for_its_effective_amount(system: tuple[Cluster, str]) -> None:
    partly = notification(
        "PARTIALLY_AUTHORISED", extra={"vads_effective_amount": "3000", "vads_auth_result": "1"}
    )
    state, events = both_ways(system, [partly], "C6")
    assert (state.phase, state.paid_amount, types(events)) == ("accepted", 3000, ["payment.accepted"])


def test_7_cascade_legs_without_trans_uuid_are_keyed_by_sequence(system: tuple[Cluster, str]) -> None:
    bare = [
        {
            k: v
            for k, v in leg(1, "CVCO", 6000, "AUTHORISED", UUID_PAY).items()
            if k not in ("trans_uuid", "auth_result")
        }
    ]
    bare.append({k: v for k, v in leg(2, "CB", 4000, "AUTHORISED", UUID_CB).items() if k != "trans_uuid"})
    state, events = both_ways(system, [cascade(bare)], "C7")
    assert (state.phase, state.paid_amount, state.cvco_amount) == ("accepted", 10000, 6000)
    assert [event_leg["trans_uuid"] for event_leg in events[-1]["legs"]] == [None, None]


def test_8_a_cascade_expiring_with_money_authorised_is_flagged_and_alerted(
    system: tuple[Cluster, str],
) -> None:
    cluster, _ = system
    redis = Redis.from_url(cluster.redis_url)
    started = cascade(
        [leg(1, "CVCO", 2000, "AUTHORISED", UUID_PAY), leg(2, "CB", 8000, "WAITING_AUTHORISATION", UUID_CB)]
    )
    state, _ = deliver(system, [started], "C80001")
    wait_until(lambda: state_of(redis, state.key).phase == "expired", 40, "the sweeper expires the session")
    expired = events_of(redis, state.key)[-1]
    assert (expired["type"], expired["paid_amount"], expired["flags"]) == (
        "payment.expired",
        2000,
        ["expired_authorised"],
    )
    wait_until(lambda: alerted(cluster, "expired_authorised", state.key), 10, "the expiry is alerted")


def test_9_two_capture_batches_one_capture_event_and_the_event_trans_id_as_received(
    system: tuple[Cluster, str],
) -> None:
    legs = [leg(1, "CVCO", 6000, "AUTHORISED", UUID_PAY), leg(2, "CB", 4000, "AUTHORISED", UUID_CB)]
    first = [leg(1, "CVCO", 6000, "CAPTURED", UUID_PAY), leg(2, "CB", 4000, "AUTHORISED", UUID_CB)]
    both = [leg(1, "CVCO", 6000, "CAPTURED", UUID_PAY), leg(2, "CB", 4000, "CAPTURED", UUID_CB)]
    notes = [cascade(legs), cascade(first, source="BATCH"), cascade(both, source="BATCH")]
    state, events = both_ways(system, notes, "C9a")
    assert types(events) == ["payment.accepted", "payment.captured"] and state.phase == "captured"

    cluster, url = system
    redis = Redis.from_url(cluster.redis_url)
    upper = of_payment(notification("AUTHORISED"), "C9B001")
    lower = of_payment(notification("CAPTURED", source="BATCH"), "c9b001")
    for fields in (upper, lower):
        assert post(url, fields) == 200
        quiet(redis)
    assert [e["trans_id"] for e in events_of(redis, key_of(upper))] == ["C9B001", "c9b001"]


def test_9_a_late_abandoned_after_a_detected_expiry_publishes_no_second_end(
    system: tuple[Cluster, str],
) -> None:
    cluster, url = system
    redis = Redis.from_url(cluster.redis_url)
    state, _ = deliver(system, [notification("WAITING_AUTHORISATION", auth=None)], "C9c001")
    wait_until(lambda: state_of(redis, state.key).phase == "expired", 40, "the sweeper expires the session")
    abandoned = of_payment(notification("ABANDONED", auth=None, operation=None), "C9c001")
    assert post(url, abandoned) == 200
    quiet(redis)
    assert types(events_of(redis, state.key)) == ["payment.pending", "payment.expired"]


def test_11_a_shop_key_pasted_with_spaces_still_verifies(tmp_path: Path) -> None:
    spaced = {
        shop: {**config, "test_key": f" {config['test_key']} "}
        for shop, config in json.loads(shops_json()).items()
    }
    with Cluster(tmp_path) as cluster:
        cluster.settings_env["CVCO_SHOPS"] = json.dumps(spaced)
        cluster.start_redis()
        receiver: Service = cluster.start_receiver()
        cluster.start_worker()
        cluster.start_worker()
        url = f"http://127.0.0.1:{receiver.port}/ipn"
        state, events = deliver((cluster, url), [notification("AUTHORISED")], "C11001")
        assert state.phase == "accepted" and types(events) == ["payment.accepted"]
