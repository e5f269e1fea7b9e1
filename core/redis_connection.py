"""The Redis connection both processes use: redis-py's asyncio client with commands packed in C."""

from __future__ import annotations

import hiredis
from redis.asyncio.connection import Connection, ConnectionPool
from redis.typing import EncodableT


class HiredisPackingConnection(Connection):
    """redis-py's asyncio connection, packing commands with hiredis (C) instead of Python.

    The job writer's one script call per batch carries three arguments per job: packing them in Python was
    a visible share of the receiver's CPU. Same RESP bytes for the str, bytes and numbers sent here.
    """

    def pack_command(self, *args: EncodableT) -> list[bytes]:
        command = args[0]
        if isinstance(command, str) and " " in command:
            # redis-py names some commands in one string ("CLIENT SETINFO"): they go as separate words
            args = (*command.split(), *args[1:])
        return [hiredis.pack_command(args)]  # type: ignore[arg-type]  # hiredis's stub omits bytearray, which it packs too


def connection_pool(url: str, *, timeout_s: float | None = None) -> ConnectionPool:
    """Connections to `url`, bounded by `timeout_s` if given; plain-TCP ones pack commands with hiredis.

    A `rediss://` or `unix://` URL names its own connection class, which wins over this one.
    """
    return ConnectionPool.from_url(
        url,
        connection_class=HiredisPackingConnection,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry_on_timeout=False,
    )
