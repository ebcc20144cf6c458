"""Whole engines wired in memory with the flooder as their frame handler (TUN and TAP).

The "server" here is the ``shared`` table: which pairs may see each other and
through which networks; only those pairs get each other as peers, exactly as
the coordination server only lists the peers a node may see.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest
from shoal.addressing import mac_for_key
from shoal.engine import Engine
from shoal.identity import StaticKeypair
from shoal.peer import Timers
from shoal.testing.fakes import FakeNetwork, FakeTun, ipv4_packet
from shoal_frames_broadcast.fanout import Flooder
from shoal_frames_broadcast.token_bucket import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Lan:
    def __init__(self, names: list[str], shared: dict[frozenset[str], tuple[str, ...]],
                 mode: str = "tun") -> None:
        self.net = FakeNetwork()
        self.clock = Clock()
        self.keys = {n: StaticKeypair.generate() for n in names}
        self.vip = {n: f"100.64.0.{i + 2}" for i, n in enumerate(names)}
        self.tun = {n: FakeTun() for n in names}
        self.ep = {n: (f"198.51.100.{i + 2}", 41641) for i, n in enumerate(names)}
        self.eng: dict[str, Engine] = {}
        self.flooders: dict[str, Flooder] = {}
        for n in names:
            e = Engine(self.keys[n], self.tun[n].fileno(), self.net.transport(self.ep[n]),
                       timers=Timers(keepalive=10), clock=self.clock, mode=mode)
            self.eng[n] = e
        by_key = {self.keys[n].public: n for n in names}
        for a, b in itertools.permutations(names, 2):
            nets = shared.get(frozenset((a, b)), ())
            if nets:
                self.eng[a].add_peer(b, self.keys[b].public, self.vip[b], self.ep[b])
        for n in names:
            e = self.eng[n]

            def networks_of(key: bytes, n: str = n) -> tuple[str, ...]:
                return shared.get(frozenset((n, by_key[key])), ())

            f = Flooder(e.peers, e.send_to_peer, networks_of, TokenBucket(1000, 1000, 0.0),
                        self.clock, e.l2)
            f.directed = bytes([100, 127, 255, 255])
            e.frame_handlers.append(f.handler)
            self.flooders[n] = f

    async def start(self) -> None:
        for e in self.eng.values():
            await e.start(autotick=False)
        await self.tick()
        await self.tick()

    async def settle(self) -> None:
        for _ in range(8):
            await asyncio.sleep(0.005)

    async def tick(self) -> None:
        self.clock.t += 0.25
        for e in self.eng.values():
            e.tick()
        await self.settle()

    def delivered(self) -> dict[str, list[bytes]]:
        return {n: t.delivered() for n, t in self.tun.items()}

    def close(self) -> None:
        for e in self.eng.values():
            e.stop()


def run(coro):
    return asyncio.run(coro)


MESH = {frozenset(("alice", "bob")): ("lan", "games"), frozenset(("alice", "carol")): ("lan",),
        frozenset(("bob", "carol")): ("lan",), frozenset(("dave", "erin")): ("other",)}


@pytest.mark.parametrize("dst", ["255.255.255.255", "100.127.255.255", "239.1.2.3"])
def test_tun_broadcast_and_multicast_reach_each_member_exactly_once(dst):
    async def main():
        lan = Lan(["alice", "bob", "carol", "dave", "erin"], MESH)
        await lan.start()
        lan.delivered()
        pkt = ipv4_packet(lan.vip["alice"], dst, b"who is there?")
        lan.tun["alice"].inject(pkt)
        await lan.settle()
        got = lan.delivered()
        assert got["bob"] == [pkt] and got["carol"] == [pkt]   # once, though bob shares two
        assert got["alice"] == [] and got["dave"] == [] and got["erin"] == []
        c = lan.flooders["alice"].counters.as_dict()
        assert c["packets"] == 1 and c["copies"] == 2
        assert c["networks"]["lan"] == {"packets": 1, "copies": 2}
        assert c["networks"]["games"] == {"packets": 1, "copies": 1}
        # the receivers did not flood it again
        assert lan.flooders["bob"].counters.packets == 0
        lan.close()

    run(main())


def test_hub_and_spoke_floods_follow_visibility():
    shared = {frozenset(("hub", "s1")): ("star",), frozenset(("hub", "s2")): ("star",)}
    async def main():
        lan = Lan(["hub", "s1", "s2"], shared)
        await lan.start()
        lan.delivered()
        from_spoke = ipv4_packet(lan.vip["s1"], "255.255.255.255", b"spoke")
        lan.tun["s1"].inject(from_spoke)
        await lan.settle()
        got = lan.delivered()
        assert got == {"hub": [from_spoke], "s1": [], "s2": []}   # the hub does not relay
        from_hub = ipv4_packet(lan.vip["hub"], "224.0.0.251", b"hub")
        lan.tun["hub"].inject(from_hub)
        await lan.settle()
        got = lan.delivered()
        assert got == {"hub": [], "s1": [from_hub], "s2": [from_hub]}
        lan.close()

    run(main())


def test_ipv6_multicast_from_link_local_source():
    import ipaddress

    async def main():
        lan = Lan(["alice", "bob"], {frozenset(("alice", "bob")): ("lan",)})
        await lan.start()
        lan.delivered()
        pkt = (bytes([0x60, 0, 0, 0, 0, 8, 17, 1]) + ipaddress.IPv6Address("fe80::1").packed
               + ipaddress.IPv6Address("ff02::1:2").packed + b"\x00" * 8)
        lan.tun["alice"].inject(pkt)
        await lan.settle()
        assert lan.delivered()["bob"] == [pkt]
        lan.close()

    run(main())


def eth(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> bytes:
    return dst + src + ethertype.to_bytes(2, "big") + payload


def test_tap_arp_and_non_ip_frames():
    """TAP mode: ARP request flooded, reply routed by MAC, other EtherTypes carried."""
    async def main():
        lan = Lan(["alice", "bob", "carol", "dave"], MESH, mode="tap")
        await lan.start()
        lan.delivered()
        mac = {n: mac_for_key(k.public) for n, k in lan.keys.items()}
        bcast = b"\xff" * 6
        arp_req = eth(bcast, mac["alice"], 0x0806, b"\x00\x01\x08\x00\x06\x04\x00\x01"
                      + mac["alice"] + bytes([100, 64, 0, 2]) + b"\x00" * 6 + bytes([100, 64, 0, 3]))
        lan.tun["alice"].inject(arp_req)
        await lan.settle()
        got = lan.delivered()
        assert got["bob"] == [arp_req] and got["carol"] == [arp_req] and got["dave"] == []
        arp_rep = eth(mac["alice"], mac["bob"], 0x0806, b"\x00\x01\x08\x00\x06\x04\x00\x02"
                      + mac["bob"] + bytes([100, 64, 0, 3]) + mac["alice"] + bytes([100, 64, 0, 2]))
        lan.tun["bob"].inject(arp_rep)
        await lan.settle()
        assert lan.delivered()["alice"] == [arp_rep]
        # a non-IP EtherType, unicast and broadcast; and IPX in its Ethernet II framing
        raw = eth(mac["carol"], mac["alice"], 0x88B5, b"shoal l2 test" + b"\x00" * 33)
        ipx = eth(bcast, mac["alice"], 0x8137, b"\xff\xff\x00\x1e" + b"\x00" * 42)
        lan.tun["alice"].inject(raw)
        lan.tun["alice"].inject(ipx)
        await lan.settle()
        got = lan.delivered()
        assert got["carol"] == [raw, ipx] and got["bob"] == [ipx] and got["dave"] == []
        # a frame that claims another node's source MAC is dropped by the receiver
        forged = eth(mac["bob"], mac["carol"], 0x88B5, b"forged" + b"\x00" * 40)
        lan.tun["alice"].inject(forged)
        await lan.settle()
        assert lan.delivered()["bob"] == []
        assert lan.eng["bob"].drops.spoofed_source == 1
        lan.close()

    run(main())
