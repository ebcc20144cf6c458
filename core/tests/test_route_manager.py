"""A node's gateway routes: engine tables, kernel routes and the gateway's forwarding
rules follow the server's summaries and the peer set (OS calls recorded, not run)."""

from __future__ import annotations

import asyncio
import ipaddress
from types import SimpleNamespace

import pytest
from shoal.control import messages as m
from shoal.identity import StaticKeypair
from shoal.routing import forwarding
from shoal.routing.manager import RouteManager
from shoal.routing.rules import SourceCheck

N = ipaddress.IPv4Network
ME, GW, BOB = (StaticKeypair.generate() for _ in range(3))


@pytest.fixture
def os_calls(monkeypatch):
    calls: list[tuple] = []

    async def route_replace(prefix, ifname):
        calls.append(("route", str(prefix)))

    async def route_delete(prefix, ifname):
        calls.append(("unroute", str(prefix)))

    async def apply_forwarding(ifname, served):
        calls.append(("nft", [(str(s.prefix), s.members, s.masquerade) for s in served]))

    async def remove_forwarding(ifname):
        calls.append(("nft-off",))

    async def local_lans(exclude):
        return [N("203.0.113.0/24")]

    for name, fn in (("route_replace", route_replace), ("route_delete", route_delete),
                     ("apply_forwarding", apply_forwarding),
                     ("remove_forwarding", remove_forwarding), ("local_lans", local_lans)):
        monkeypatch.setattr(forwarding, name, fn)
    monkeypatch.setattr(forwarding, "set_ip_forward", lambda on: calls.append(("fwd", on)) or False)
    return calls


def peer(key: StaticKeypair):
    return SimpleNamespace(routed=SourceCheck())


def summary(net: str, *routes: tuple[str, StaticKeypair, bool, bool]) -> m.NetworkSummary:
    return m.NetworkSummary(name=net, type="gateway", role="member", join_mode="open",
                            member_limit=10, members=3, routes=[
                                m.RouteInfo(prefix=p, gateway=k.public_b64, gateway_name="x",
                                            approved=a, masquerade=q) for p, k, a, q in routes])


class World:
    def __init__(self, me: StaticKeypair = ME) -> None:
        self.engine = SimpleNamespace(peers={GW.public: peer(GW), BOB.public: peer(BOB)},
                                      prefix_routes=None, l2=False)
        self.nets: list[m.NetworkSummary] = []
        self.infos = {
            k.public: m.PeerInfo(public_key=k.public_b64, name=n, virtual_ip=ip, networks=nets)
            for k, n, ip, nets in ((GW, "gw", "100.64.0.3", ["site"]),
                                   (BOB, "bob", "100.64.0.4", ["site", "other"]))}
        self.rm = RouteManager(self.engine, lambda: "shoal0", me.public_b64, lambda: self.nets,
                               lambda: self.infos)

    async def settle(self) -> None:
        for _ in range(5):
            await asyncio.sleep(0)


def test_member_installs_approved_routes_and_refuses_its_own_lan(os_calls):
    async def main():
        w = World()
        w.nets = [summary("site", ("192.168.50.0/24", GW, True, False),
                          ("192.168.60.0/24", GW, False, False),
                          ("203.0.113.0/25", BOB, True, False))]
        w.rm.refresh()
        await w.settle()
        gw = w.engine.peers[GW.public]
        assert w.engine.prefix_routes.lookup(bytes([192, 168, 50, 9])) is gw
        assert w.engine.prefix_routes.lookup(bytes([192, 168, 60, 9])) is None
        assert gw.routed.allows(bytes([192, 168, 50, 9]))
        assert not w.engine.peers[BOB.public].routed
        assert os_calls == [("route", "192.168.50.0/24")]
        states = {r["prefix"]: r["state"] for r in w.rm.status()}
        assert states == {"192.168.50.0/24": "installed", "192.168.60.0/24": "awaiting-approval",
                          "203.0.113.0/25": "refused"}
        assert all(r["gateway_online"] for r in w.rm.status())
        assert "own LAN 203.0.113.0/24" in next(r["reason"] for r in w.rm.status()
                                                if r["state"] == "refused")
        # the gateway goes offline: the kernel route stays (no leak), the engine has no entry
        del w.engine.peers[GW.public]
        w.rm.refresh()
        await w.settle()
        assert w.engine.prefix_routes.lookup(bytes([192, 168, 50, 9])) is None
        row = next(r for r in w.rm.status() if r["prefix"] == "192.168.50.0/24")
        assert row["state"] == "installed" and not row["gateway_online"]
        w.engine.peers[GW.public] = gw
                # the route is withdrawn: the kernel route and the engine's entries go
        w.nets = [summary("site")]
        w.rm.refresh()
        await w.settle()
        assert os_calls[-1] == ("unroute", "192.168.50.0/24")
        assert not w.engine.prefix_routes and not gw.routed
        await w.rm.close()
    asyncio.run(main())


def test_gateway_serves_only_members_of_the_approving_network(os_calls):
    async def main():
        w = World(me=GW)
        w.engine.peers = {BOB.public: peer(BOB)}
        w.infos[ME.public] = m.PeerInfo(public_key=ME.public_b64, name="me",
                                        virtual_ip="100.64.0.2", networks=["site"])
        del w.infos[GW.public]
        w.nets = [summary("site", ("192.168.50.0/24", GW, True, True)),
                  summary("other", ("10.9.0.0/16", GW, True, False))]
        w.rm.refresh()
        await w.settle()
        assert os_calls == [("fwd", True), ("nft", [
            ("192.168.50.0/24", ("100.64.0.2", "100.64.0.4"), True),
            ("10.9.0.0/16", ("100.64.0.4",), False)])]
        assert {r["state"] for r in w.rm.status()} == {"serving"}
        await w.rm.close()
        assert os_calls[-2:] == [("nft-off",), ("fwd", False)]
    asyncio.run(main())


def test_ruleset_admits_members_drops_the_rest():
    text = forwarding.ruleset("shoal0", [forwarding.Served(
        N("192.168.50.0/24"), "site", True, ("100.64.0.2", "100.64.0.4"))])
    assert "set m0 { type ipv4_addr; elements = { 100.64.0.2, 100.64.0.4 }; }" in text
    lines = [ln.strip() for ln in text.splitlines()]
    accept = lines.index('iifname "shoal0" ip saddr @m0 ip daddr 192.168.50.0/24 accept')
    assert lines[accept + 1] == 'iifname "shoal0" drop'
    assert 'oifname != "shoal0" ip saddr @m0 ip daddr 192.168.50.0/24 masquerade' in lines
    assert text.startswith("table ip shoal_gw_shoal0 {}\ndelete table ip shoal_gw_shoal0\n")
    empty = forwarding.ruleset("sh.0", [forwarding.Served(N("10.0.0.0/8"), "n", False, ())])
    assert "elements" not in empty and "masquerade" not in empty and "shoal_gw_sh_0" in empty
