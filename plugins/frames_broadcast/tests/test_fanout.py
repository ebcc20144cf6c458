"""The flooder alone: exactly-once fan-out, visibility rules, counters, storm limiting."""

from shoal.testing.fakes import ipv4_packet
from shoal_frames_broadcast.fanout import Flooder
from shoal_frames_broadcast.token_bucket import TokenBucket

BCAST = ipv4_packet("100.64.0.1", "255.255.255.255", b"who is there?")
UNICAST = ipv4_packet("100.64.0.1", "100.64.0.9", b"hi")


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def make(shared: dict[str, tuple[str, ...]], rate=1000, burst=1000, l2=False):
    """``shared``: peer name -> networks shared with it (as the server lists them)."""
    peers = {name.encode(): name for name in shared}
    sent: list[tuple[str, bytes]] = []
    clock = Clock()
    f = Flooder(peers, lambda p, pkt: sent.append((p, pkt)),
                lambda key: shared[key.decode()], TokenBucket(rate, burst, 0.0), clock, l2)
    return f, sent, clock


def test_once_per_peer_however_many_networks_are_shared():
    f, sent, _ = make({"bob": ("lan", "games", "work"), "carol": ("lan",), "dave": ("games",)})
    assert f.handler(BCAST) is True
    assert sorted(p for p, _ in sent) == ["bob", "carol", "dave"]
    assert all(pkt == BCAST for _, pkt in sent)
    c = f.counters.as_dict()
    assert c["packets"] == 1 and c["copies"] == 3
    assert c["networks"] == {"games": {"packets": 1, "copies": 2},
                             "lan": {"packets": 1, "copies": 2},
                             "work": {"packets": 1, "copies": 1}}
    assert c["kinds"] == {"broadcast": 1}


def test_peer_sharing_no_network_gets_nothing():
    # e.g. a peer kept for another reason, or a spoke the server lists without a shared network
    f, sent, _ = make({"hub": ("star",), "stranger": ()})
    f.handler(BCAST)
    assert [p for p, _ in sent] == ["hub"]


def test_spoke_floods_only_to_the_hubs_it_is_given():
    # hub-and-spoke: the server gives a spoke only the hubs; the flood follows that list
    f, sent, _ = make({"hub1": ("star",), "hub2": ("star",)})
    f.handler(ipv4_packet("100.64.0.5", "239.1.2.3"))
    assert sorted(p for p, _ in sent) == ["hub1", "hub2"]


def test_unicast_and_unknown_are_not_taken():
    f, sent, _ = make({"bob": ("lan",)})
    assert f.handler(UNICAST) is False
    assert f.handler(b"") is False
    assert f.handler(b"\x45" + b"\x00" * 10) is False
    assert sent == [] and f.counters.packets == 0


def test_nobody_to_send_to_is_taken_and_counted():
    f, sent, _ = make({})
    assert f.handler(BCAST) is True
    assert sent == [] and f.counters.no_peers == 1


def test_directed_broadcast_once_address_known():
    f, _, _ = make({"bob": ("lan",)})
    pkt = ipv4_packet("100.64.0.1", "100.127.255.255")
    assert f.handler(pkt) is False
    f.directed = bytes([100, 127, 255, 255])
    assert f.handler(pkt) is True
    assert f.counters.kinds == {"directed_broadcast": 1}


def test_storm_is_limited_and_drops_counted():
    f, sent, clock = make({"bob": ("lan",), "carol": ("lan",)}, rate=100, burst=10)
    for _ in range(1000):                 # a burst at one instant
        f.handler(BCAST)
    assert f.counters.packets == 10 and f.counters.rate_limited == 990
    assert len(sent) == 20                # 10 packets x 2 peers
    for i in range(1, 101):               # one second of a 1000 pps storm
        clock.t = 1 + i / 100
        for _ in range(10):
            f.handler(BCAST)
    # refilled bucket (10) + 100 tokens per second, not the 1000 offered
    assert 100 <= f.counters.packets - 10 <= 10 + 100
    assert f.counters.packets + f.counters.as_dict()["dropped_rate_limit"] == 2000


def test_l2_floods_group_frames_only():
    f, sent, _ = make({"bob": ("lan",)}, l2=True)
    arp = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x06" + b"\x00" * 28
    ipx_sap = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x81\x37" + b"\xff\xff" + b"\x00" * 40
    uni = b"\x02\xaa\xbb\xcc\xdd\xee" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + b"\x00" * 40
    assert f.handler(arp) and f.handler(ipx_sap)
    assert f.handler(uni) is False
    assert [pkt for _, pkt in sent] == [arp, ipx_sap]
    assert f.counters.kinds == {"l2_broadcast": 2}
