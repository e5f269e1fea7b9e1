"""Who sent a request: the client address behind trusted proxies, and the optional `POST /ipn` allowlist."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from schemas.settings import IPNetwork

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    # an IPv4 peer seen through a dual-stack socket (::ffff:10.0.0.1) is that IPv4 address
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _in_any(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address.version == network.version and address in network for network in networks)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted_proxies: Sequence[IPNetwork]
) -> str:
    """The client's address: the direct peer, unless the peer is a trusted proxy.

    `forwarded_for` holds every `X-Forwarded-For` line in order: together they are one list (RFC 9110),
    and a proxy that adds a line of its own leaves the client's forged line before it. Behind trusted
    proxies that list is read right to left and the first address that is not itself a trusted proxy
    is the client; everything left of it was written by the client and is ignored. A malformed entry
    stops the walk: the last address vouched for is returned.
    """
    if not trusted_proxies:
        return peer or "unknown"
    peer_address = _address(peer or "")
    if peer_address is None:
        return peer or "unknown"
    if not forwarded_for or not _in_any(peer_address, trusted_proxies):
        return str(peer_address)
    client = peer_address
    for hop in reversed(",".join(forwarded_for).split(",")):
        hop_address = _address(hop)
        if hop_address is None:
            break
        client = hop_address
        if not _in_any(hop_address, trusted_proxies):
            break
    return str(client)


def is_allowed(client: str, allowlist: Sequence[IPNetwork]) -> bool:
    """True when the allowlist is empty or holds the client's address."""
    if not allowlist:
        return True
    address = _address(client)
    return address is not None and _in_any(address, allowlist)
