"""`Batcher`: what the jobs running at once send to Redis goes in one call, one call in flight at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Reply = TypeVar("Reply")


class Batcher(Generic[Item, Reply]):
    """Coalesces the items that a worker's jobs `submit` into batches, each sent by one call of `send`.

    The first submission while nothing is in flight starts a task that runs at the next turn, after every
    job that was ready in this one: it takes all pending items and sends them at once. Items submitted
    while that call is in flight wait for it and go together in the next one, and so on until none is
    left: under load a batch gathers the items of several turns, one round trip for them all. An error of
    `send` fails every item of its batch, each job seeing what its own call would have raised.

    `send` answers one reply per item, in the order given; `order`, if set, sorts each batch first (stable).
    """

    def __init__(
        self,
        send: Callable[[list[Item]], Awaitable[Sequence[Reply]]],
        order: Callable[[Item], Any] | None = None,
    ) -> None:
        self._send = send
        self._order = order
        self._pending: list[tuple[Item, asyncio.Future[Reply]]] = []
        self._flush: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Reply:
        """Send `item` with the others of its batch; its reply."""
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[Reply] = loop.create_future()
        self._pending.append((item, reply))
        if self._flush is None or self._flush.done():  # done: drained, or cancelled (shutdown)
            self._flush = loop.create_task(self._send_all())
        return await reply

    async def _send_all(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await self._send_batch(batch)
        except asyncio.CancelledError:
            for _, reply in self._pending:
                reply.cancel()
            self._pending = []
            raise

    async def _send_batch(self, batch: list[tuple[Item, asyncio.Future[Reply]]]) -> None:
        if self._order is not None:
            order = self._order
            batch.sort(key=lambda pending: order(pending[0]))
        try:
            replies = await self._send([item for item, _ in batch])
        except asyncio.CancelledError:
            for _, reply in batch:
                reply.cancel()
            raise
        except Exception as e:
            for _, reply in batch:
                if not reply.done():
                    reply.set_exception(e)
            return
        for (_, reply), value in zip(batch, replies, strict=True):
            if not reply.done():
                reply.set_result(value)
