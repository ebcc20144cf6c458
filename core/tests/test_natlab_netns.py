"""The NAT lab's routers behave as labelled (RFC 4787 / RFC 5780 words).

One lab: the internet switch with the discovery server (203.0.113.10/.11, ports
3478/3479) and six sites, one per NAT type. Every site's host classifies its NAT
with ``natlab.classify`` (one UDP socket); the tests then check loss injection,
rebinding and that unsolicited inbound packets do not disturb the mapping.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from shoal.testing import natlab, netlab
from shoal.testing.natlab import AD, APD, EI, NAT_TYPES, Classification, Internet, Site

_REASON = netlab.can_run()
pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(_REASON is not None, reason=f"netns lab: {_REASON}"),
]

EIM_TYPES = ("full-cone", "address-restricted", "port-restricted")
EXPECTED = {  # nat type -> (mapping, filtering)
    "none": (EI, EI),
    "full-cone": (EI, EI),
    "address-restricted": (EI, AD),
    "port-restricted": (EI, APD),
    "symmetric": (APD, APD),
}


@dataclass
class Env:
    lab: netlab.Lab
    inet: Internet
    sites: dict[str, Site]
    initial: dict[str, Classification]   # classification before any test changed a site
    keys: dict[str, int]                 # port keys of the initial generation


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with netlab.Lab("nat") as lab:
        inet = natlab.internet(lab)
        sites = {nat: natlab.add_site(lab, inet, nat, i) for i, nat in enumerate(NAT_TYPES, 1)}
        with ThreadPoolExecutor(len(sites)) as pool:
            initial = dict(zip(sites, pool.map(lambda s: natlab.classify_site(s, inet),
                                               sites.values())))
        yield Env(lab, inet, sites, initial, {n: s.port_key for n, s in sites.items()})


@pytest.mark.parametrize("nat", [n for n in NAT_TYPES if n != "udp-blocked"])
def test_classified_as_labelled(env: Env, nat: str) -> None:
    c, site = env.initial[nat], env.sites[nat]
    assert c.mapped is not None, f"{nat}: no UDP answer ({c})"
    assert (c.mapping, c.filtering) == EXPECTED[nat], c
    assert c.nat_type == nat
    if nat == "none":
        assert c.mapped == c.local and c.local[0] == site.wan_ip
        return
    assert c.local[0] == site.lan_ip
    assert c.mapped[0] == site.wan_ip
    if nat in EIM_TYPES:  # the explicit mapping: inside port XOR the site's key
        assert c.mapped[1] == c.local[1] ^ env.keys[nat]
        assert set(c.observed.values()) == {c.mapped}
    else:  # one external port per destination
        assert len(set(c.observed.values())) == 3, c.observed


def test_udp_blocked_but_tcp_works(env: Env) -> None:
    site = env.sites["udp-blocked"]
    c = env.initial["udp-blocked"]
    assert c.udp_blocked and c.nat_type == "udp-blocked", c
    seen = natlab.tcp_probe(site, env.inet)
    assert seen is not None and seen[0] == site.wan_ip


@pytest.mark.parametrize("nat", [n for n in NAT_TYPES if n != "udp-blocked"])
def test_tcp_through_every_router(env: Env, nat: str) -> None:
    seen = natlab.tcp_probe(env.sites[nat], env.inet)
    assert seen is not None and seen[0] == env.sites[nat].wan_ip


def test_loss(env: Env) -> None:
    lab, inet, site = env.lab, env.inet, env.sites["full-cone"]
    try:
        natlab.set_loss(lab, site, 100)
        assert natlab.mapped_address(site, inet, tries=2, timeout=0.2) is None
        # 50% each way: about a quarter of the exchanges complete (half if one-way)
        natlab.set_loss(lab, site, 50)
        answered = natlab.burst_site(site, inet, count=200, wait=0.5)
        assert 20 <= answered <= 80, answered
    finally:
        natlab.set_loss(lab, site, 0)
    assert natlab.mapped_address(site, inet) is not None
    assert natlab.burst_site(site, inet, count=200, wait=0.5) == 200
    assert "natlab_loss" not in natlab.router_rules(lab, site)


@pytest.mark.parametrize("nat", [*EIM_TYPES, "symmetric"])
def test_rebind_changes_external_port(env: Env, nat: str) -> None:
    lab, inet, site = env.lab, env.inet, env.sites[nat]
    port = 40000 + site.index
    before = natlab.mapped_address(site, inet, port=port)
    again = natlab.mapped_address(site, inet, port=port)
    assert before is not None and before == again  # the same flow keeps its mapping
    key = site.port_key
    natlab.rebind(lab, site)
    after = natlab.mapped_address(site, inet, port=port)
    assert after is not None and after[0] == before[0] and after[1] != before[1]
    if nat in EIM_TYPES:
        assert before[1] == port ^ key and after[1] == port ^ site.port_key
    assert natlab.mapped_address(site, inet, port=port) == after
    c = natlab.classify_site(site, inet)
    assert c.nat_type == nat, c


@pytest.mark.parametrize("nat", EIM_TYPES)
def test_unsolicited_inbound_keeps_mapping(env: Env, nat: str) -> None:
    """A remote endpoint that sends first (punching) must not change the mapping the
    host gets when it then sends to that endpoint."""
    lab, inet, site = env.lab, env.inet, env.sites[nat]
    port = 41000 + site.index
    external = port ^ site.port_key
    remote = (inet.server_ips[1], inet.ports[1])  # A2:P2, not yet used from this port
    natlab.inject(inet.server_ns, remote, (site.wan_ip, external), count=3)
    time.sleep(0.1)
    first = natlab.mapped_address(site, inet, port=port)
    assert first == (site.wan_ip, external)
    assert natlab.mapped_address(site, inet, port=port, server=remote) == first
    assert "natlab" in natlab.router_rules(lab, site)


def _punch_both(a: Site, pa: int, a_ext: tuple[str, int], b: Site, pb: int,
                b_ext: tuple[str, int]) -> tuple[int, int]:
    with ThreadPoolExecutor(2) as pool:
        fa = pool.submit(natlab.punch, a, pa, b_ext)
        fb = pool.submit(natlab.punch, b, pb, a_ext)
        return fa.result(), fb.result()


def test_hole_punch_between_cone_sites(env: Env) -> None:
    """Address-restricted <-> port-restricted: each side's own packets open its filter
    for the other's (predictable) mapping, so the simultaneous punch gets through."""
    a, b = env.sites["address-restricted"], env.sites["port-restricted"]
    pa, pb = 42000 + a.index, 42000 + b.index
    got_a, got_b = _punch_both(a, pa, (a.wan_ip, pa ^ a.port_key),
                               b, pb, (b.wan_ip, pb ^ b.port_key))
    assert got_a > 0 and got_b > 0, (got_a, got_b)


def test_hole_punch_symmetric_to_port_restricted_fails(env: Env) -> None:
    """The symmetric side's mapping towards the peer is not the one the server saw."""
    s, b = env.sites["symmetric"], env.sites["port-restricted"]
    ps, pb = 43000 + s.index, 43000 + b.index
    s_seen = natlab.mapped_address(s, env.inet, port=ps)
    assert s_seen is not None
    got_s, got_b = _punch_both(s, ps, s_seen, b, pb, (b.wan_ip, pb ^ b.port_key))
    assert (got_s, got_b) == (0, 0)
