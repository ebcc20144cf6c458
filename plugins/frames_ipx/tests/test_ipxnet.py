"""The IPXNET bridge, sans-IO: registration, numbering, routing, visibility, abuse."""

from __future__ import annotations

import socket

from shoal_frames_ipx.ipx_header import (
    BROADCAST_NODE,
    IpxAddress,
    IpxHeader,
    decode,
    encode,
    ping_request,
    registration_request,
)
from shoal_frames_ipx.ipxnet import ENVELOPE, IpxnetBridge, ToClient, ToNode

IP = {n: socket.inet_aton(f"100.64.0.{i}") for i, n in enumerate(["alice", "bob", "carol",
                                                                   "dave"], start=2)}


class World:
    """Bridges on several nodes; ``shares`` says who is whose peer (as the server would)."""

    def __init__(self, shares: dict[str, set[str]]) -> None:
        self.shares = shares
        self.bridges = {n: IpxnetBridge(lambda n=n: {IP[p] for p in shares[n]}, IP[n])
                        for n in shares}
        self.inbox: dict[tuple[str, tuple[str, int]], list[bytes]] = {}
        self.now = 100.0

    def client(self, node: str, port: int) -> bytes:
        """Register a DOSBox client; returns its node number."""
        (reply,) = self.from_client(node, port, registration_request())
        h, _ = decode(reply)
        return h.dest.node

    def from_client(self, node: str, port: int, data: bytes) -> list[bytes]:
        """Run a datagram from a client; returns what came back to that same client."""
        self.run(node, self.bridges[node].from_client(data, ("127.0.0.1", port), self.now))
        return self.inbox.pop((node, ("127.0.0.1", port)), [])

    def run(self, node: str, actions) -> None:
        for a in actions:
            if isinstance(a, ToClient):
                self.inbox.setdefault((node, a.addr), []).append(a.data)
            else:
                assert isinstance(a, ToNode)
                dest = next(n for n, ip in IP.items() if ip == a.ip)
                if dest in self.bridges:
                    self.run(dest, self.bridges[dest].from_node(a.data, IP[node], self.now))

    def take(self, node: str, port: int) -> list[tuple[IpxHeader, bytes]]:
        return [decode(d) for d in self.inbox.pop((node, ("127.0.0.1", port)), [])]


def dgram(src: bytes, dst: bytes, payload: bytes, sock: int = 0x4000) -> bytes:
    return encode(IpxHeader(IpxAddress(node=dst, socket=sock), IpxAddress(node=src, socket=sock)),
                  payload)


MESH = {"alice": {"bob", "carol"}, "bob": {"alice", "carol"}, "carol": {"alice", "bob"},
        "dave": set()}


def test_registration_numbers_clients_by_node_address_and_port():
    w = World(MESH)
    a = w.client("alice", 40001)
    assert a == IP["alice"] + (40001).to_bytes(2, "big")
    assert w.client("alice", 40001) == a                 # registering again: same number
    b = w.client("bob", 40001)
    assert b == IP["bob"] + (40001).to_bytes(2, "big")   # same port on another node: no clash
    # the bridge's answer looks like DOSBox's server's
    (reply,) = w.from_client("alice", 40002, registration_request())
    h, _ = decode(reply)
    assert h.dest.socket == 2 and h.src.socket == 2 and h.dest.network == b"\x00" * 4
    assert h.src.node == IP["alice"] + b"\x00\x00"
    assert w.bridges["alice"].counters.registrations == 3


def test_id_collision_gets_another_number():
    br = IpxnetBridge(lambda: set(), IP["alice"])
    r1 = br.from_client(registration_request(), ("127.0.0.1", 5000), 0.0)
    r2 = br.from_client(registration_request(), ("127.0.0.2", 5000), 0.0)  # same port, other host
    n1, n2 = decode(r1[0].data)[0].dest.node, decode(r2[0].data)[0].dest.node
    assert n1 != n2 and n1[:4] == n2[:4] == IP["alice"]


def test_broadcast_reaches_every_other_client_once_and_never_the_outsider():
    w = World(MESH)
    a1, a2 = w.client("alice", 1001), w.client("alice", 1002)
    b, c, d = w.client("bob", 2001), w.client("carol", 3001), w.client("dave", 4001)
    assert w.from_client("alice", 1001, dgram(a1, BROADCAST_NODE, b"who's there?")) == []
    for node, port in (("alice", 1002), ("bob", 2001), ("carol", 3001)):
        (got,) = w.take(node, port)
        assert got[0].src.node == a1 and got[1] == b"who's there?"
    assert w.take("dave", 4001) == []
    cnt = w.bridges["alice"].counters
    assert cnt.broadcasts == 1 and cnt.to_nodes == 2 and cnt.to_clients == 1
    assert w.bridges["bob"].counters.from_nodes == 1
    del a2, b, c, d


def test_unicast_goes_straight_to_the_owner():
    w = World(MESH)
    a, b = w.client("alice", 1001), w.client("bob", 2001)
    c = w.client("carol", 3001)
    w.from_client("alice", 1001, dgram(a, b, b"hi bob"))
    assert [p for _, p in w.take("bob", 2001)] == [b"hi bob"]
    assert w.take("carol", 3001) == []
    assert w.bridges["carol"].counters.from_nodes == 0    # carol's bridge saw nothing
    w.from_client("bob", 2001, dgram(b, a, b"hi alice"))
    assert [p for _, p in w.take("alice", 1001)] == [b"hi alice"]
    a2 = w.client("alice", 1002)                          # local unicast stays local
    w.from_client("alice", 1001, dgram(a, a2, b"next door"))
    assert [p for _, p in w.take("alice", 1002)] == [b"next door"]
    del c


def test_unicast_to_a_node_outside_the_networks_is_dropped():
    w = World(MESH)
    a, d = w.client("alice", 1001), w.client("dave", 4001)
    w.from_client("alice", 1001, dgram(a, d, b"psst"))
    assert w.take("dave", 4001) == []
    assert w.bridges["alice"].counters.dropped == {"unreachable": 1}
    w.from_client("alice", 1001, dgram(a, IP["bob"] + b"\x99\x99", b"nobody"))
    assert w.bridges["bob"].counters.dropped == {"unknown_destination": 1}


def test_hub_and_spoke_spokes_do_not_hear_each_other():
    w = World({"alice": {"bob", "carol"}, "bob": {"alice"}, "carol": {"alice"}})  # alice is hub
    a, b, c = w.client("alice", 1), w.client("bob", 2), w.client("carol", 3)
    w.from_client("bob", 2, dgram(b, BROADCAST_NODE, b"spoke"))
    assert [p for _, p in w.take("alice", 1)] == [b"spoke"] and w.take("carol", 3) == []
    w.from_client("alice", 1, dgram(a, BROADCAST_NODE, b"hub"))
    assert [p for _, p in w.take("bob", 2)] == [b"hub"] == [p for _, p in w.take("carol", 3)]
    del c


def test_dosbox_ping_is_forwarded_and_answered_by_unicast():
    w = World(MESH)
    a, b = w.client("alice", 1001), w.client("bob", 2001)
    w.from_client("alice", 1001, ping_request(a))
    (got,) = w.take("bob", 2001)
    assert got[0].dest.socket == 2 and got[0].is_broadcast
    from shoal_frames_ipx.ipx_header import ping_reply
    w.from_client("bob", 2001, ping_reply(a, b))
    (ans,) = w.take("alice", 1001)
    assert ans[0].src.node == b and ans[0].dest.socket == 2


def test_abuse_is_dropped_and_counted():
    w = World(MESH)
    a, b = w.client("alice", 1001), w.client("bob", 2001)
    br = w.bridges["bob"]
    # a client that never registered, and one that forges another client's node
    w.from_client("alice", 5555, dgram(a, b, b"x"))
    w.from_client("alice", 1001, dgram(IP["alice"] + b"\x00\x07", b, b"x"))
    w.from_client("alice", 1001, b"short")
    assert w.bridges["alice"].counters.dropped == {"unregistered": 1, "spoofed": 1,
                                                   "malformed": 1}
    # a peer speaking for another node's clients, a non-peer, garbage, our own address
    forged = ENVELOPE + dgram(IP["carol"] + b"\x00\x01", b, b"x")
    assert br.from_node(forged, IP["alice"], 0) == []
    assert br.from_node(ENVELOPE + dgram(IP["dave"] + b"\x00\x01", b, b"x"), IP["dave"], 0) == []
    assert br.from_node(b"SX\x01\x00" + b"\x00" * 10, IP["alice"], 0) == []
    assert br.from_node(b"XX\x01\x00" + dgram(a, b, b"x"), IP["alice"], 0) == []
    assert br.from_node(ENVELOPE + dgram(IP["bob"] + b"\x00\x01", b, b"x"), IP["bob"], 0) == []
    assert br.counters.dropped == {"spoofed": 1, "not_a_peer": 2, "malformed": 2}
    assert w.take("bob", 2001) == []


def test_bridge_restart_keeps_client_numbers():
    w = World(MESH)
    a, b = w.client("alice", 1001), w.client("bob", 2001)
    w.bridges["bob"] = IpxnetBridge(lambda: {IP["alice"], IP["carol"]}, IP["bob"])  # restarted
    # DOSBox does not register again; its next datagram carries the number it has
    w.from_client("bob", 2001, dgram(b, BROADCAST_NODE, b"still here"))
    assert [p for _, p in w.take("alice", 1001)] == [b"still here"]
    w.from_client("alice", 1001, dgram(a, b, b"welcome back"))
    assert [p for _, p in w.take("bob", 2001)] == [b"welcome back"]


def test_unregistered_client_is_readopted_by_its_own_number():
    br = IpxnetBridge(lambda: {IP["bob"]}, IP["alice"])
    node = IP["alice"] + (1001).to_bytes(2, "big")
    out = br.from_client(dgram(node, BROADCAST_NODE, b"back"), ("127.0.0.1", 1001), 0.0)
    assert [a.ip for a in out if isinstance(a, ToNode)] == [IP["bob"]]
    assert br.clients[("127.0.0.1", 1001)].node == node
    # but not someone else's number
    out = br.from_client(dgram(node, BROADCAST_NODE, b"me too"), ("127.0.0.1", 1002), 0.0)
    assert out == [] and br.counters.dropped == {"unregistered": 1}


def test_address_unknown_until_the_server_assigns_it():
    br = IpxnetBridge(lambda: set())
    assert br.from_client(registration_request(), ("127.0.0.1", 1), 0.0) == []
    br.set_local_ip(IP["alice"])
    (reply,) = br.from_client(registration_request(), ("127.0.0.1", 1), 0.0)
    assert decode(reply.data)[0].dest.node[:4] == IP["alice"]


def test_status_lists_clients_and_remote_clients_per_node():
    w = World(MESH)
    a, b1 = w.client("alice", 1001), w.client("bob", 2001)
    b2 = w.client("bob", 2002)
    w.from_client("bob", 2001, dgram(b1, BROADCAST_NODE, b"1"))
    w.from_client("bob", 2002, dgram(b2, a, b"2"))
    names = {ip: n for n, ip in IP.items()}
    st = w.bridges["alice"].status(w.now, names.__getitem__)
    assert st["client_count"] == 1 and st["clients"][0]["node"] == "64:40:00:02:03:e9"
    assert st["remote_clients_per_node"] == {"bob": 2}
    assert st["counters"]["from_nodes"] == 2 and st["counters"]["to_clients"] == 2
