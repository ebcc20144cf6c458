"""Gateway routes in the data plane: LAN prefixes go to their gateway, and packets from a
routed prefix are accepted only from that gateway (two engines in memory)."""

from __future__ import annotations

import asyncio
import ipaddress

from shoal.engine import Engine
from shoal.identity import StaticKeypair
from shoal.routing.rules import PrefixTable, SourceCheck
from shoal.testing.fakes import FakeNetwork, FakeTun, ipv4_packet

A_EP, B_EP = ("198.51.100.1", 41641), ("198.51.100.2", 41641)
A_IP, B_IP = "100.64.0.1", "100.64.0.2"

LAN = ipaddress.IPv4Network("192.168.50.0/24")
HOST = "192.168.50.10"


class Pair:
    def __init__(self) -> None:
        net = FakeNetwork()
        self.now = 1000.0
        ka, kb = StaticKeypair.generate(), StaticKeypair.generate()
        self.tun_a, self.tun_b = FakeTun(), FakeTun()
        self.a = Engine(ka, self.tun_a.fileno(), net.transport(A_EP), clock=lambda: self.now)
        self.b = Engine(kb, self.tun_b.fileno(), net.transport(B_EP), clock=lambda: self.now)
        self.pa = self.a.add_peer("b", kb.public, B_IP, B_EP)
        self.pb = self.b.add_peer("a", ka.public, A_IP, A_EP)

    async def settle(self) -> None:
        for _ in range(5):
            await asyncio.sleep(0.005)

    async def connect(self) -> None:
        await self.a.start(autotick=False)
        await self.b.start(autotick=False)
        self.now += 0.25
        self.a.tick()
        self.b.tick()
        await self.settle()
        assert self.pa.current is not None and self.pb.current is not None

    def close(self) -> None:
        self.a.stop()
        self.b.stop()


def test_lan_prefix_goes_to_gateway_and_replies_are_admitted_only_from_it():
    async def main():
        p = Pair()  # b is the gateway of 192.168.50.0/24
        await p.connect()
        # before the route is approved: nothing goes out, replies are spoofed
        p.tun_a.inject(ipv4_packet(A_IP, HOST, b"early"))
        await p.settle()
        assert p.tun_b.delivered() == [] and p.a.drops.no_route == 1
        p.tun_b.inject(ipv4_packet(HOST, A_IP, b"early reply"))
        await p.settle()
        assert p.tun_a.delivered() == [] and p.a.drops.spoofed_source == 1

        p.a.prefix_routes = PrefixTable([(LAN, p.pa)])
        p.pa.routed = SourceCheck([LAN])
        p.tun_a.inject(ipv4_packet(A_IP, HOST, b"to the lan"))
        await p.settle()
        assert p.tun_b.delivered() == [ipv4_packet(A_IP, HOST, b"to the lan")]
        p.tun_b.inject(ipv4_packet(HOST, A_IP, b"from the lan"))
        await p.settle()
        assert p.tun_a.delivered() == [ipv4_packet(HOST, A_IP, b"from the lan")]
        # outside the routed prefix, the gateway is held to its own address
        p.tun_b.inject(ipv4_packet("192.168.51.10", A_IP, b"not routed"))
        await p.settle()
        assert p.tun_a.delivered() == [] and p.a.drops.spoofed_source == 2
        # a is no gateway: b does not accept LAN sources from it
        p.tun_a.inject(ipv4_packet(HOST, B_IP, b"claims the lan"))
        await p.settle()
        assert p.tun_b.delivered() == [] and p.b.drops.spoofed_source == 1
        p.close()
    asyncio.run(main())
