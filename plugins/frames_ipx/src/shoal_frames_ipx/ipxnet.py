"""DOSBox IPXNET bridge, sans-IO: local DOSBox clients <-> the bridges of peer nodes.

DOSBox's ``ipxnet connect HOST PORT`` speaks IPX over UDP to a server: each UDP
datagram is one IPX datagram (``ipx_header``). Its signalling:

* registration: the client sends a header to the echo socket (2) with every
  address zero; the server answers with a header whose *destination* carries
  the client's network and node number, which the client uses from then on.
  A second registration from a known client gets the same answer.
* broadcast: destination node ff:ff:ff:ff:ff:ff goes to every other client
  (never back to the sender: DOSBox delivers its own broadcasts locally).
* unicast: goes to the one client owning the destination node.
* ``ipxnet ping`` is a broadcast to socket 2, answered by each client with a
  unicast: plain traffic for the bridge.

Here every Shoal node runs such a server (the bridge) for its own clients,
and the bridges of the nodes of a network pass datagrams to each other over
the overlay. Node numbers say where a client lives::

    node = overlay IPv4 of its Shoal node (4 bytes) | client id (2 bytes, big-endian)

    the bridge itself is id 0; ids 1..0xfffe are clients (the client's UDP
    source port when free, so a client keeps its number across a restart of
    the node); ff:ff:ff:ff:ff:ff is broadcast.

So a unicast goes straight to the node named by the first four bytes, with
no directory. Between bridges each UDP datagram is::

     0     2     3     4
    +-----+-----+-----+-------------------------------------------
    | "SX"| ver | 0   | IPX datagram (30-byte header + payload)
    +-----+-----+-----+-------------------------------------------

and is accepted only from a peer sharing a network (``peers()``), whose overlay
address (authenticated by the tunnel) equals the first four bytes of the
datagram's source node: a node cannot speak for another node's clients.

Broadcasts from a client go once to each peer node; a peer's broadcast goes to
every local client. Nothing received from a peer is sent on to another peer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from shoal_frames_ipx.ipx_header import (
    BROADCAST_NODE,
    ECHO_SOCKET,
    HEADER_LEN,
    MalformedIpx,
    decode,
    format_node,
    registration_reply,
)

log = logging.getLogger(__name__)

MAGIC = b"SX"
VERSION = 1
ENVELOPE = MAGIC + bytes([VERSION, 0])
MAX_CLIENTS = 256
MAX_REMOTE = 1024        # remote client nodes remembered for status
ZERO4 = b"\x00" * 4

Addr = tuple[str, int]


@dataclass(frozen=True)
class ToClient:
    addr: Addr
    data: bytes


@dataclass(frozen=True)
class ToNode:
    ip: bytes        # packed overlay IPv4 of the peer node
    data: bytes      # envelope + IPX datagram


Action = ToClient | ToNode


@dataclass
class Client:
    addr: Addr
    id: int
    node: bytes
    registered: float
    last_seen: float
    from_client: int = 0
    to_client: int = 0


@dataclass
class BridgeCounters:
    registrations: int = 0
    from_clients: int = 0       # datagrams from local clients, forwarded
    to_clients: int = 0         # datagrams delivered to local clients
    to_nodes: int = 0           # datagrams sent to peer bridges
    from_nodes: int = 0         # datagrams accepted from peer bridges
    broadcasts: int = 0         # broadcasts from local clients
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> list[Action]:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        return []


class IpxnetBridge:
    """One node's IPXNET server and its link to the other nodes' bridges.

    ``peers()`` returns the packed overlay IPv4 addresses of the peers that
    share a network with this node (where broadcasts go; whom to accept).
    """

    def __init__(self, peers: Callable[[], Collection[bytes]], local_ip: bytes | None = None,
                 max_clients: int = MAX_CLIENTS) -> None:
        self.peers = peers
        self.local_ip = local_ip
        self.max_clients = max_clients
        self.clients: dict[Addr, Client] = {}
        self.by_id: dict[int, Client] = {}
        self.remote: dict[bytes, tuple[bytes, float]] = {}   # node -> (peer ip, last seen)
        self.counters = BridgeCounters()

    # ------------------------------------------------------------ address
    def set_local_ip(self, ip: bytes) -> None:
        """The node's overlay address; clients numbered under another one are forgotten."""
        if ip != self.local_ip:
            if self.clients:
                log.info("ipxnet: overlay address changed, %d clients must reconnect",
                         len(self.clients))
            self.clients.clear()
            self.by_id.clear()
            self.local_ip = ip

    @property
    def bridge_node(self) -> bytes:
        return (self.local_ip or ZERO4) + b"\x00\x00"

    # ------------------------------------------------------------ local clients
    def from_client(self, data: bytes, addr: Addr, now: float) -> list[Action]:
        c = self.counters
        if self.local_ip is None:
            return c.drop("no_address_yet")
        try:
            h, _ = decode(data)
        except MalformedIpx:
            return c.drop("malformed")
        client = self.clients.get(addr)
        if h.dest.socket == ECHO_SOCKET and h.dest.node[:4] == ZERO4:
            return self._register(addr, client, now)
        if client is None:
            client = self._readopt(addr, h.src.node, now)
            if client is None:
                return c.drop("unregistered")
        if h.src.node != client.node:
            return c.drop("spoofed")
        client.last_seen = now
        client.from_client += 1
        datagram = bytes(data[:h.length])
        dest = h.dest.node
        out: list[Action] = []
        if dest == BROADCAST_NODE:
            c.broadcasts += 1
            for other in self.clients.values():
                if other is not client:
                    out.append(self._to_client(other, datagram))
            wrapped = ENVELOPE + datagram
            for ip in self.peers():
                out.append(ToNode(ip, wrapped))
        elif dest[:4] == self.local_ip:
            target = self.by_id.get(int.from_bytes(dest[4:], "big"))
            if target is None:
                return c.drop("unknown_destination")
            out.append(self._to_client(target, datagram))
        elif dest[:4] in self.peers():
            out.append(ToNode(dest[:4], ENVELOPE + datagram))
        else:
            return c.drop("unreachable")
        c.from_clients += 1
        c.to_nodes += sum(1 for a in out if isinstance(a, ToNode))
        return out

    def _to_client(self, client: Client, datagram: bytes) -> ToClient:
        client.to_client += 1
        self.counters.to_clients += 1
        return ToClient(client.addr, datagram)

    def _register(self, addr: Addr, client: Client | None, now: float) -> list[Action]:
        if client is None:
            cid = self._allocate(addr[1])
            assert self.local_ip is not None
            client = Client(addr, cid, self.local_ip + cid.to_bytes(2, "big"), now, now)
            self._add(client)
            log.info("ipxnet: client %s:%d registered as %s", addr[0], addr[1],
                     format_node(client.node))
        client.last_seen = now
        self.counters.registrations += 1
        return [ToClient(addr, registration_reply(client.node, self.bridge_node))]

    def _readopt(self, addr: Addr, src_node: bytes, now: float) -> Client | None:
        """A client registered before this bridge (re)started: keep the number it already has."""
        cid = int.from_bytes(src_node[4:], "big")
        if src_node[:4] != self.local_ip or cid != addr[1] or cid in self.by_id or cid in (0, 0xFFFF):
            return None
        client = Client(addr, cid, src_node, now, now)
        self._add(client)
        log.info("ipxnet: client %s:%d re-adopted as %s", addr[0], addr[1], format_node(src_node))
        return client

    def _allocate(self, port: int) -> int:
        if 0 < port < 0xFFFF and port not in self.by_id:
            return port
        for cid in range(1, 0xFFFF):
            if cid not in self.by_id:
                return cid
        raise RuntimeError("no free IPX client id")  # unreachable: max_clients is far below

    def _add(self, client: Client) -> None:
        if len(self.clients) >= self.max_clients:
            oldest = min(self.clients.values(), key=lambda x: x.last_seen)
            log.info("ipxnet: client table full, forgetting %s", format_node(oldest.node))
            del self.clients[oldest.addr]
            del self.by_id[oldest.id]
        self.clients[client.addr] = client
        self.by_id[client.id] = client

    # ------------------------------------------------------------ peer bridges
    def from_node(self, data: bytes, src_ip: bytes, now: float) -> list[Action]:
        c = self.counters
        if data[:3] != ENVELOPE[:3] or len(data) < 4 + HEADER_LEN:
            return c.drop("malformed")
        datagram = data[4:]
        try:
            h, _ = decode(datagram)
        except MalformedIpx:
            return c.drop("malformed")
        if src_ip == self.local_ip or src_ip not in self.peers():
            return c.drop("not_a_peer")
        if h.src.node[:4] != src_ip:
            return c.drop("spoofed")
        if h.src.node not in self.remote and len(self.remote) >= MAX_REMOTE:
            del self.remote[min(self.remote, key=lambda n: self.remote[n][1])]
        self.remote[h.src.node] = (src_ip, now)
        datagram = datagram[:h.length]
        dest = h.dest.node
        out: list[Action] = []
        if dest == BROADCAST_NODE:
            out = [self._to_client(cl, datagram) for cl in self.clients.values()]
        elif dest[:4] == self.local_ip:
            target = self.by_id.get(int.from_bytes(dest[4:], "big"))
            if target is None:
                return c.drop("unknown_destination")
            out = [self._to_client(target, datagram)]
        else:
            return c.drop("not_for_this_node")
        c.from_nodes += 1
        return out

    # ------------------------------------------------------------ status
    def status(self, now: float, peer_name: Callable[[bytes], str]) -> dict[str, Any]:
        per_node: dict[str, int] = {}
        remote = []
        for node, (ip, seen) in sorted(self.remote.items()):
            name = peer_name(ip)
            per_node[name] = per_node.get(name, 0) + 1
            remote.append({"node": format_node(node), "peer": name,
                           "last_seen_s": round(now - seen, 1)})
        c = self.counters
        return {
            "node": format_node(self.bridge_node) if self.local_ip else None,
            "clients": [{"node": format_node(cl.node), "address": f"{cl.addr[0]}:{cl.addr[1]}",
                         "from_client": cl.from_client, "to_client": cl.to_client,
                         "idle_s": round(now - cl.last_seen, 1)}
                        for cl in self.clients.values()],
            "client_count": len(self.clients),
            "remote_clients": remote,
            "remote_clients_per_node": per_node,
            "counters": {"registrations": c.registrations, "from_clients": c.from_clients,
                         "to_clients": c.to_clients, "to_nodes": c.to_nodes,
                         "from_nodes": c.from_nodes, "broadcasts": c.broadcasts,
                         "dropped": dict(c.dropped)},
        }
