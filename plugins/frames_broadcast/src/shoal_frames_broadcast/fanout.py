"""Flooding: one copy of a broadcast/multicast packet to each peer that shares a network.

Rules (ARCHITECTURE §5):

* A flooded packet goes to every peer this node *may see* and that shares at
  least one network with it, **exactly once per peer**, however many networks
  they share: the fan-out iterates peers, not networks.
* Never back to the sender (this node is not its own peer) and never to a node
  outside the shared networks: the coordination server only lists the peers a
  node may see (in a hub-and-spoke network a spoke is only given the hubs), and
  ``networks_of`` returns () for a peer that shares no network, which is skipped.
* Received floods are written to the interface by the engine and never pass
  through here again, so nothing is re-flooded (no loops, no relaying between
  spokes).
* Storm protection: one token per flooded packet from a per-node bucket; a
  packet without a token is dropped and counted.

The flooder is a frame handler (``handler(packet) -> bool``): it runs on the
data path for packets unicast routing missed, so the test for "is this
flooded?" is a few byte comparisons and everything else happens only for
packets that are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shoal_frames_broadcast.classify import floods_ethernet, floods_ip, kind_of
from shoal_frames_broadcast.token_bucket import TokenBucket

#: public key -> names of the networks this node shares with that peer (() = none)
NetworksOf = Callable[[bytes], Sequence[str]]
#: send(peer, packet): hand one interface packet to the engine for that peer
SendToPeer = Callable[[Any, bytes], object]


@dataclass
class NetworkCounters:
    packets: int = 0   # flooded packets that reached at least one peer of this network
    copies: int = 0    # copies sent to peers of this network


@dataclass
class FloodCounters:
    packets: int = 0          # packets flooded (taken from the interface)
    copies: int = 0           # copies handed to the engine, one per receiving peer
    rate_limited: int = 0     # packets dropped by the token bucket
    no_peers: int = 0         # flooded packets with nobody to send them to
    kinds: dict[str, int] = field(default_factory=dict)
    networks: dict[str, NetworkCounters] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"packets": self.packets, "copies": self.copies,
                "dropped_rate_limit": self.rate_limited, "no_peers": self.no_peers,
                "kinds": dict(self.kinds),
                "networks": {n: {"packets": c.packets, "copies": c.copies}
                             for n, c in sorted(self.networks.items())}}


class Flooder:
    def __init__(self, peers: Mapping[bytes, Any], send: SendToPeer, networks_of: NetworksOf,
                 bucket: TokenBucket, clock: Callable[[], float], l2: bool) -> None:
        self.peers = peers
        self.send = send
        self.networks_of = networks_of
        self.bucket = bucket
        self.clock = clock
        self.l2 = l2
        self.directed = b""   # packed overlay broadcast address, set when the address is known
        self.counters = FloodCounters()
        #: the frame handler to register with the engine
        self.handler: Callable[[bytes], bool] = self._handle_l2 if l2 else self._handle_ip

    # ------------------------------------------------------------ data path
    def _handle_ip(self, pkt: bytes) -> bool:
        if not floods_ip(pkt, self.directed):
            return False
        return self.flood(pkt)

    def _handle_l2(self, frame: bytes) -> bool:
        if not floods_ethernet(frame):
            return False
        return self.flood(frame)

    def targets(self) -> list[tuple[Any, Sequence[str]]]:
        """(peer, shared networks) for each peer a flood goes to, each peer once."""
        out = []
        networks_of = self.networks_of
        for key, peer in self.peers.items():
            nets = networks_of(key)
            if nets:
                out.append((peer, nets))
        return out

    def flood(self, pkt: bytes) -> bool:
        """Send ``pkt`` once to each target; True (taken) even when dropped or nobody listens."""
        c = self.counters
        if not self.bucket.take(self.clock()):
            c.rate_limited += 1
            return True
        c.packets += 1
        kind = kind_of(pkt, self.l2).value
        c.kinds[kind] = c.kinds.get(kind, 0) + 1
        targets = self.targets()
        if not targets:
            c.no_peers += 1
            return True
        reached: set[str] = set()
        for peer, nets in targets:
            self.send(peer, pkt)
            c.copies += 1
            for n in nets:
                nc = c.networks.get(n)
                if nc is None:
                    nc = c.networks[n] = NetworkCounters()
                nc.copies += 1
                reached.add(n)
        for n in reached:
            c.networks[n].packets += 1
        return True
