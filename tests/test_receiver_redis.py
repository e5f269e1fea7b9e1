"""The receiver's Redis connection packs commands with hiredis: same bytes as redis-py, works on a real Redis."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis
from redis.asyncio.connection import Connection

from core.redis_connection import HiredisPackingConnection
from tests.conftest import TEST_REDIS_URL

arguments = st.lists(
    st.one_of(
        st.text(st.characters(exclude_categories=["Cs"])),
        st.binary(),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
    ),
    max_size=12,
)
command_names = st.sampled_from(["EVAL", "ZADD", "XADD", "CLIENT SETINFO", "SCRIPT LOAD"])


@given(command_names, arguments)
def test_hiredis_packing_gives_redis_pys_exact_bytes(name: str, args: list[str | bytes | int]) -> None:
    """Every command the receiver sends (multi-word names included) is packed to the same RESP bytes."""
    ours = b"".join(HiredisPackingConnection().pack_command(name, *args))
    theirs = b"".join(Connection().pack_command(name, *args))
    assert ours == theirs


async def test_a_client_on_hiredis_packing_connections_talks_to_redis(redis: Redis) -> None:
    """Connect (with redis-py's CLIENT SETINFO handshake), EVAL, read back: a real Redis understands it."""
    client = Redis.from_url(TEST_REDIS_URL, connection_class=HiredisPackingConnection)
    try:
        assert await client.ping()
        assert await client.eval("return redis.call('SET', KEYS[1], ARGV[1])", 1, "k", "é") == b"OK"
        assert await client.get("k") == "é".encode()
    finally:
        await client.aclose()
