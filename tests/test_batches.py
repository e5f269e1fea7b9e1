"""`Batcher`: the items of jobs running at once go in one call, each job gets its own reply or error."""

from __future__ import annotations

import asyncio

import pytest

from workers.batches import Batcher


class Recorder:
    """A `send` that keeps each batch it is given and answers each item doubled; `gate` holds a call."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.called = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_next = False

    async def send(self, batch: list[int]) -> list[int]:
        self.batches.append(batch)
        self.called.set()
        await self.gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("redis went away")
        return [item * 2 for item in batch]


async def test_items_submitted_in_one_turn_go_in_one_call_each_with_its_own_reply() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.send)
    replies = await asyncio.gather(*(batcher.submit(item) for item in range(10)))
    assert replies == [item * 2 for item in range(10)]
    assert recorder.batches == [list(range(10))]


async def test_a_batch_is_sent_in_order_and_each_reply_still_reaches_its_submitter() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder.send, order=lambda item: -item)
    replies = await asyncio.gather(*(batcher.submit(item) for item in (3, 1, 2)))
    assert recorder.batches == [[3, 2, 1]]
    assert replies == [6, 2, 4]


async def _first_call_held(recorder: Recorder) -> tuple[Batcher[int, int], asyncio.Task[int]]:
    """A batcher whose first call, carrying item 1, is in flight and held until `recorder.gate` opens."""
    recorder.gate.clear()
    batcher = Batcher(recorder.send)
    first = asyncio.create_task(batcher.submit(1))
    await recorder.called.wait()
    return batcher, first


async def test_items_submitted_while_a_call_is_in_flight_wait_and_go_together_in_the_next() -> None:
    recorder = Recorder()
    batcher, first = await _first_call_held(recorder)
    later = [asyncio.create_task(batcher.submit(2))]
    await asyncio.sleep(0)  # a later turn
    later.append(asyncio.create_task(batcher.submit(3)))
    await asyncio.sleep(0)
    recorder.gate.set()
    assert await asyncio.gather(first, *later) == [2, 4, 6]
    assert recorder.batches == [[1], [2, 3]]


async def test_a_failed_call_fails_every_item_of_its_batch_and_the_next_batch_is_sent() -> None:
    recorder = Recorder()
    recorder.fail_next = True
    batcher = Batcher(recorder.send)
    failed = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
    assert [type(error) for error in failed] == [ConnectionError, ConnectionError]
    assert await batcher.submit(3) == 6
    assert recorder.batches == [[1, 2], [3]]


async def test_at_shutdown_items_in_flight_or_waiting_are_cancelled_not_left_hanging() -> None:
    batcher, in_flight = await _first_call_held(Recorder())
    waiting = asyncio.create_task(batcher.submit(2))
    await asyncio.sleep(0)
    for task in asyncio.all_tasks() - {asyncio.current_task(), in_flight, waiting}:
        task.cancel()  # as the loop does to every task at shutdown: here, the batcher's sender
    for submitted in (in_flight, waiting):
        with pytest.raises(asyncio.CancelledError):
            await submitted
