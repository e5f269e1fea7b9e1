"""Client address behind proxies and the allowlist, as pure functions."""

from __future__ import annotations

from ipaddress import ip_network

from ingest.network import client_address, is_allowed

PROXIES = [ip_network("10.0.0.0/8"), ip_network("2001:db8::/32")]


def test_direct_peer_is_the_client_when_it_is_not_a_proxy() -> None:
    """X-Forwarded-For from an untrusted peer is ignored."""
    assert client_address("198.51.100.1", ["192.0.2.7"], PROXIES) == "198.51.100.1"


def test_right_most_untrusted_hop_is_the_client() -> None:
    """Trusted hops are skipped from the right; the first untrusted one is the client, left of it is ignored."""
    assert client_address("10.0.0.1", ["203.0.113.5, 192.0.2.7, 10.9.9.9"], PROXIES) == "192.0.2.7"


def test_every_header_line_is_read_and_a_forged_first_line_is_not_believed() -> None:
    """A proxy that adds its own line after the client's: the lines are one list, walked from the right."""
    lines = ["192.0.2.66", "203.0.113.9, 10.1.1.1"]
    assert client_address("10.0.0.1", lines, PROXIES) == "203.0.113.9"
    assert client_address("10.0.0.1", ["10.4.4.4", "10.1.1.1"], PROXIES) == "10.4.4.4"


def test_all_hops_trusted_gives_the_left_most_hop() -> None:
    """When every hop is a proxy, the farthest one vouched for is the best answer."""
    assert client_address("10.0.0.1", ["10.2.2.2, 10.3.3.3"], PROXIES) == "10.2.2.2"


def test_a_malformed_hop_stops_the_walk_at_the_last_vouched_address() -> None:
    """Garbage in the header is never returned as an address."""
    assert client_address("10.0.0.1", ["192.0.2.7, not-an-ip, 10.3.3.3"], PROXIES) == "10.3.3.3"


def test_ipv4_mapped_peer_is_read_as_ipv4() -> None:
    """A dual-stack socket's ::ffff:10.0.0.1 peer is the trusted IPv4 proxy 10.0.0.1."""
    assert client_address("::ffff:10.0.0.1", ["192.0.2.7"], PROXIES) == "192.0.2.7"


def test_ipv6_proxy_and_client() -> None:
    """IPv6 proxies and clients are handled like IPv4 ones."""
    assert client_address("2001:db8::1", ["2001:db9::5"], PROXIES) == "2001:db9::5"


def test_empty_allowlist_allows_everyone_and_a_set_one_only_its_networks() -> None:
    """No allowlist admits all; a set allowlist admits only its networks and never an unparsable address."""
    assert is_allowed("198.51.100.1", [])
    assert is_allowed("192.0.2.9", [ip_network("192.0.2.0/24")])
    assert not is_allowed("198.51.100.1", [ip_network("192.0.2.0/24")])
    assert not is_allowed("unknown", [ip_network("192.0.2.0/24")])
