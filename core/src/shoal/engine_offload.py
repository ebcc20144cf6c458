"""The data plane's batched loops, used when the TUN carries a virtio-net header.

Interface -> peers: one read may be a 64 KB TCP/UDP super-packet (TSO/USO).
It is cut into tunnel-sized IP packets (``offload.segment``), each sealed on
its own with the next counter of the peer's current session, and the sealed
datagrams go to the transport together (``Transport.send_many``: one
``sendmsg`` with UDP_SEGMENT on the UDP transport, a loop elsewhere). Every datagram on the
wire is still one independently authenticated, independently replay-checked
packet, so a lost datagram costs one segment and a peer without offloads
reads them like any others.

Peers -> interface: the datagrams of one UDP GRO read (``Engine.on_datagrams``)
that decrypted, passed the replay window and the source check are merged per
flow into super-packets (``offload.coalesce``) and written when the transport
says the batch is over (``Engine.on_burst_end``). A datagram that arrives on
its own is written at once (``write_plain``): nothing waits for later reads,
so a packet never queues behind a long drain (a flood, say) and an idle round
trip gains no timer.

Same lock rules as ``engine``: the node's one event loop thread.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from shoal.offload.coalesce import Coalescer
from shoal.offload.segment import split
from shoal.offload.virtio import LEN, PLAIN, BadVirtioHeader

if TYPE_CHECKING:
    from shoal.engine import Engine

TUN_BATCH = 256
READ_SIZE = LEN + 65535
ZERO4 = b"\x00\x00\x00\x00"


class BatchedInterface:
    """Reads and writes of a TUN with IFF_VNET_HDR for one engine."""

    def __init__(self, engine: Engine, uso: bool) -> None:
        self.engine = engine
        self.fd = engine.tun_fd
        self.rx = Coalescer(udp=uso)
        self.super_packets_in = 0   # TSO/USO reads that were cut into segments
        self.super_packets_out = 0  # coalesced writes

    # ------------------------------------------------------------ interface -> peers
    def on_interface_readable(self) -> None:
        e = self.engine
        read = os.read
        fd = self.fd
        routes = e.routes
        drops = e.drops
        for _ in range(TUN_BATCH):
            try:
                buf = read(fd, READ_SIZE)
            except OSError:  # BlockingIOError: drained
                return
            if buf[1] == 0 and buf[0] == 0:   # no GSO, checksum complete
                pkts = [buf[LEN:]]
            else:
                try:
                    pkts = split(buf)
                except BadVirtioHeader:
                    drops.malformed += 1
                    continue
                if len(pkts) > 1:
                    self.super_packets_in += 1
            pkt = pkts[0]
            n = len(pkt)
            v = pkt[0] >> 4 if n else 0
            if v == 4 and n >= 20:
                peer = routes.get(pkt[16:20])
            elif v == 6 and n >= 40:
                peer = routes.get(pkt[24:40])
            else:
                drops.malformed += 1
                continue
            if peer is None:  # broadcast, multicast, gateway routes, unknown destination
                for p in pkts:
                    e._unrouted(p)
                continue
            s = peer.current
            if s is None:
                for p in pkts:
                    e._stage(peer, p)
                continue
            prefix = s._header_prefix
            enc = s.encrypt
            c = s.send_counter
            size = 0
            if len(pkts) == 1:
                ctr = c.to_bytes(8, "little")
                h = prefix + ctr
                s.send_counter = c + 1
                try:
                    peer.send(h + enc(ZERO4 + ctr, pkt, h), peer.endpoint)
                except OSError:
                    drops.send_failed += 1
                    continue
                size = n
            else:
                out = []
                for p in pkts:
                    ctr = c.to_bytes(8, "little")
                    c += 1
                    h = prefix + ctr
                    out.append(h + enc(ZERO4 + ctr, p, h))
                    size += len(p)
                s.send_counter = c
                try:
                    peer.send_many(out, peer.endpoint)
                except OSError:
                    drops.send_failed += len(out)
                    continue
            st = peer.stats
            st.tx_packets += len(pkts)
            st.tx_bytes += size

    # ------------------------------------------------------------ peers -> interface
    def flush(self) -> None:
        """Write the packets collected from a batch, coalesced."""
        if not self.rx:
            return
        fd = self.fd
        write = os.write
        for w in self.rx.flush():
            if len(w) > 1500:
                self.super_packets_out += 1
            try:
                write(fd, w)
            except OSError:
                pass

    def write_plain(self, pkt: bytes) -> None:
        """Write one complete packet at once."""
        try:
            os.write(self.fd, PLAIN + pkt)
        except OSError:
            pass
