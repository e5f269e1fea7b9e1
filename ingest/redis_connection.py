"""The Redis connection both processes use: redis-py's asyncio client with commands packed in C."""

from __future__ import annotations

import hiredis
from redis.asyncio.connection import Connection
from redis.typing import EncodableT


class HiredisPackingConnection(Connection):
    """redis-py's asyncio connection, packing commands with hiredis (C) instead of Python.

    The job writer's one EVAL per batch carries five arguments per job: redis-py's packer spent about
    50 us on a batch of 16, hiredis about 8. Same RESP bytes for the str, bytes and numbers sent here.
    """

    def pack_command(self, *args: EncodableT) -> list[bytes]:
        command = args[0]
        if isinstance(command, str) and " " in command:
            # redis-py names some commands in one string ("CLIENT SETINFO"): they go as separate words
            args = (*command.split(), *args[1:])
        return [hiredis.pack_command(args)]  # type: ignore[arg-type]  # hiredis's stub omits bytearray, which it packs too
