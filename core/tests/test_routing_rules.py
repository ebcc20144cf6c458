"""Route conflict rules and source checks for routed prefixes (``shoal.routing.rules``)."""

import ipaddress

import pytest
from shoal.routing.rules import PrefixTable, Route, RouteRefused, SourceCheck, decide, parse_prefix

N = ipaddress.IPv4Network


@pytest.mark.parametrize("value, why", [
    ("0.0.0.0/0", "default route"),
    ("100.64.0.0/16", "overlay address pool"),
    ("100.0.0.0/8", "overlay address pool"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.1.0/24", "link-local"),
    ("224.0.0.0/8", "multicast"),
    ("fd00::/64", "only IPv4"),
    ("192.168.50.1/24", "did you mean 192.168.50.0/24"),
    ("banana", "not a network prefix"),
])
def test_prefix_refused_with_reason(value, why):
    with pytest.raises(RouteRefused, match=why):
        parse_prefix(value)


def test_prefix_canonical():
    assert parse_prefix(" 192.168.50.0/24") == N("192.168.50.0/24")
    assert parse_prefix("10.1.2.3/32") == N("10.1.2.3/32")
    # another overlay pool configured on the server
    with pytest.raises(RouteRefused, match="overlay"):
        parse_prefix("10.9.0.0/16", "10.0.0.0/8")


def r(net: str, prefix: str, gw: str) -> Route:
    return Route(net, N(prefix), gw)


def test_decide_skips_own_routes_and_refuses_local_lan_overlap():
    out = decide([r("lan", "192.168.50.0/24", "me"), r("lan", "192.168.1.0/24", "gw"),
                  r("lan", "192.168.60.0/24", "gw")], "me", [N("192.168.0.0/20")])
    assert [(d.route.prefix, d.accepted) for d in out] == [
        (N("192.168.1.0/24"), False), (N("192.168.60.0/24"), True)]
    assert "overlaps this node's own LAN 192.168.0.0/20" in out[0].reason


def test_decide_first_network_wins_overlap_from_another_gateway():
    routes = [r("zeta", "10.1.0.0/24", "gw2"), r("alpha", "10.1.0.0/16", "gw1")]
    out = decide(routes, "me", [])
    by_net = {d.route.network: d for d in out}
    assert by_net["alpha"].accepted
    assert not by_net["zeta"].accepted
    assert "overlaps 10.1.0.0/16 from network alpha" in by_net["zeta"].reason
    # order of input does not matter
    assert [d.accepted for d in decide(list(reversed(routes)), "me", [])] == \
        [d.accepted for d in out]


def test_decide_same_route_same_gateway_in_two_networks_is_fine():
    out = decide([r("a", "10.1.0.0/24", "gw"), r("b", "10.1.0.0/24", "gw")], "me", [])
    assert all(d.accepted for d in out)


def test_source_check_admits_only_routed_prefixes():
    chk = SourceCheck([N("192.168.50.0/24"), N("10.0.0.0/8")])
    assert chk.allows(bytes([192, 168, 50, 7]))
    assert chk.allows(bytes([10, 200, 1, 1]))
    assert not chk.allows(bytes([192, 168, 51, 7]))
    assert not chk.allows(bytes([100, 64, 0, 9]))
    assert not SourceCheck()
    assert not SourceCheck().allows(bytes([192, 168, 50, 7]))


def test_prefix_table_longest_match():
    t = PrefixTable([(N("10.0.0.0/8"), "wide"), (N("10.1.0.0/16"), "narrow")])
    assert t.lookup(bytes([10, 1, 2, 3])) == "narrow"
    assert t.lookup(bytes([10, 2, 2, 3])) == "wide"
    assert t.lookup(bytes([11, 1, 2, 3])) is None
    assert not PrefixTable()
