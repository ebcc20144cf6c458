"""Receive-side coalescing (GRO in user space) of decrypted packets before the TUN write.

A burst of datagrams from a peer usually holds consecutive segments of a few
TCP flows. Writing each one to the TUN costs a syscall and a trip through the
stack; writing one super-packet with a virtio-net header (GSO TCPV4/TCPV6, or
UDP_L4 for UDP when the TUN has USO) costs one, and the kernel treats it like
a packet its own GRO built. The rules are the kernel's GRO rules
(net/ipv4/tcp_offload.c ``tcp_gro_receive``, tools/testing/selftests/net/gro.c):

* same flow (addresses, ports), same IP header fields that GRO compares
  (IPv4 TOS, DF, TTL; IPv6 traffic class, flow label, hop limit), no IPv4
  options, no fragments, no IPv6 extension headers;
* TCP: same ACK number, same header length, window and options, flags
  exactly ACK or ACK|PSH, next sequence number exactly where the group ends,
  payload not larger than the first one's, nothing after a shorter segment or
  a PSH; anything else of the flow (SYN, FIN, RST, pure ACK) ends its group so
  the kernel sees the flow's packets in arrival order;
* at most 64 KB per super-packet (and 64 segments for UDP).

Every packet given to ``add`` has already been authenticated and has passed
the peer's source-address check; the super-packet's headers are rebuilt here
from those packets (lengths, IPv4 header checksum, pseudo-header checksum
marked NEEDS_CSUM), never taken from the wire. The payload checksums the peer
computed are not re-verified: the AEAD already guarantees the bytes are the
ones the peer sent, which is all a checksum could tell (a peer can only hurt
flows from its own address).

Output order is arrival order: a group stands where its first packet arrived.
"""

from __future__ import annotations

from shoal.offload import checksum as ck
from shoal.offload.virtio import F_NEEDS_CSUM, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, PLAIN, encode

TCP_ACK = 0x10
TCP_PSH = 0x08
MAX_BYTES = 65535
MAX_UDP_SEGMENTS = 64


class _Group:
    __slots__ = (
        "ack",
        "first",
        "hl",
        "ihl",
        "last",
        "len_shift",
        "mask",
        "masked",
        "next_seq",
        "parts",
        "psh",
        "psh_shift",
        "seq_shift",
        "sig",
        "size",
        "total",
        "udp",
    )

    def __init__(self, first: bytes, ihl: int, hl: int, sig: int, ack: bytes, next_seq: int,
                 size: int, psh: bool, udp: bool) -> None:
        self.first = first
        self.ihl = ihl
        self.hl = hl
        self.sig = sig
        self.ack = ack
        self.next_seq = next_seq
        self.size = size
        self.last = size
        self.total = size
        self.parts: list[bytes] = []
        self.psh = psh
        self.udp = udp
        self.mask = 0
        self.masked = -1
        self.seq_shift = self.psh_shift = self.len_shift = 0

    def template(self) -> None:
        """The fast-path check for a TCP group: the header as one integer, with the
        fields a next segment may change (IP length, ID and checksum, sequence number,
        PSH, TCP checksum) masked out; everything else must be equal."""
        ihl, hl = self.ihl, self.hl
        bits = hl * 8
        mask = (1 << bits) - 1

        def at(a: int, b: int) -> int:   # shift of header bytes [a, b)
            return (hl - b) * 8

        def clear(a: int, b: int) -> None:
            nonlocal mask
            mask &= ~(((1 << ((b - a) * 8)) - 1) << at(a, b))
        if ihl == 40:
            clear(4, 6)
            self.len_shift = at(4, 6)
        else:
            clear(2, 6)
            clear(10, 12)
            self.len_shift = at(2, 4)
        clear(ihl + 4, ihl + 8)
        clear(ihl + 16, ihl + 18)
        self.psh_shift = at(ihl + 13, ihl + 14) + 3
        mask &= ~(1 << self.psh_shift)
        self.seq_shift = at(ihl + 4, ihl + 8)
        self.mask = mask
        self.masked = int.from_bytes(self.first[:hl], "big") & mask


class Coalescer:
    """Collects one burst of packets for the TUN; ``flush`` returns the writes.

    ``udp`` enables UDP coalescing (only when the TUN accepted USO).
    """

    __slots__ = ("_flows", "_last", "_out", "_uflows", "coalesced", "udp")

    def __init__(self, udp: bool = False) -> None:
        self.udp = udp
        self._out: list[bytes | _Group] = []
        self._flows: dict[bytes, _Group] = {}    # TCP
        self._uflows: dict[bytes, _Group] = {}   # UDP
        self._last: _Group | None = None         # TCP group that took the last packet
        self.coalesced = 0  # packets merged into another one's super-packet (a counter)

    def __len__(self) -> int:
        return len(self._out)

    def add(self, pkt: bytes) -> None:
        g = self._last
        if g is not None:
            # Fast path: the next segment of the flow that took the last packet.
            hl = g.hl
            n = len(pkt)
            if n > hl:
                h = int.from_bytes(pkt[:hl], "big")
                if h & g.mask == g.masked and (h >> g.seq_shift) & 0xFFFFFFFF == g.next_seq:
                    plen = n - hl
                    if (h >> g.len_shift) & 0xFFFF == (n if g.ihl == 20 else n - 40) \
                            and plen <= g.size and g.last == g.size and not g.psh \
                            and g.total + plen <= MAX_BYTES - hl:
                        g.parts.append(pkt[hl:])
                        g.next_seq = (g.next_seq + plen) & 0xFFFFFFFF
                        g.last = plen
                        g.total += plen
                        if (h >> g.psh_shift) & 1:
                            g.psh = True
                        self.coalesced += 1
                        return
        self._add(pkt)

    def _add(self, pkt: bytes) -> None:
        n = len(pkt)
        b0 = pkt[0] if n else 0
        if b0 == 0x45 and n >= 28:
            # IPv4 without options; no fragments; total length as received
            if pkt[6] & 0x3F or pkt[7] or (pkt[2] << 8 | pkt[3]) != n:
                self._out.append(pkt)
                return
            if pkt[9] != 6:
                self._other(pkt, n, 20, pkt[9])
                return
            ihl, key = 20, pkt[12:24]
            sig = pkt[1] | pkt[6] << 8 | pkt[8] << 16
        elif b0 >> 4 == 6 and n >= 48:
            if (pkt[4] << 8 | pkt[5]) != n - 40:
                self._out.append(pkt)
                return
            if pkt[6] != 6:
                self._other(pkt, n, 40, pkt[6])
                return
            ihl, key = 40, pkt[8:44]
            sig = int.from_bytes(pkt[0:4], "big") | pkt[7] << 32
        else:
            self._out.append(pkt)
            return
        if n < ihl + 20:
            self._out.append(pkt)
            return
        # TCP: the word at offset 12 (data offset, flags, window) must match the group's
        # except PSH, like the kernel's tcp_gro_receive; flags exactly ACK or ACK|PSH
        flags = pkt[ihl + 13]
        hl = ihl + (pkt[ihl + 12] >> 4) * 4
        plen = n - hl
        if plen <= 0 or flags & ~TCP_PSH != TCP_ACK or hl < ihl + 20:
            if self._flows.pop(key, None) is self._last:
                self._last = None
            self._out.append(pkt)
            return
        seq = int.from_bytes(pkt[ihl + 4:ihl + 8], "big")
        g = self._flows.get(key)
        if g is not None and g.next_seq == seq and g.sig == sig and g.last == g.size \
                and plen <= g.size and not g.psh and g.hl == hl \
                and g.total + plen <= MAX_BYTES - hl and g.ack == pkt[ihl + 8:ihl + 12] \
                and pkt[ihl + 14:ihl + 16] == g.first[ihl + 14:ihl + 16] \
                and (hl == ihl + 20 or pkt[ihl + 20:hl] == g.first[ihl + 20:hl]):
            g.parts.append(pkt[hl:])
            g.next_seq = (seq + plen) & 0xFFFFFFFF
            g.last = plen
            g.total += plen
            if flags & TCP_PSH:
                g.psh = True
            self.coalesced += 1
            self._last = g
            return
        g = _Group(pkt, ihl, hl, sig, pkt[ihl + 8:ihl + 12], (seq + plen) & 0xFFFFFFFF, plen,
                   bool(flags & TCP_PSH), False)
        g.template()
        self._flows[key] = g
        self._last = g
        self._out.append(g)

    def _other(self, pkt: bytes, n: int, ihl: int, proto: int) -> None:
        if proto == 17 and self.udp:
            if ihl == 20:
                self._udp(pkt, n, 20, 24, pkt[1] | pkt[6] << 8 | pkt[8] << 16)
            else:
                self._udp(pkt, n, 40, 44, int.from_bytes(pkt[0:4], "big") | pkt[7] << 32)
        else:
            self._out.append(pkt)

    def _udp(self, pkt: bytes, n: int, ihl: int, key_end: int, sig: int) -> None:
        hl = ihl + 8
        plen = n - hl
        key = pkt[key_end - (36 if ihl == 40 else 12):key_end]
        if plen <= 0 or (pkt[ihl + 4] << 8 | pkt[ihl + 5]) != n - ihl:
            self._uflows.pop(key, None)
            self._out.append(pkt)
            return
        g = self._uflows.get(key)
        if g is not None and g.sig == sig and g.last == g.size and plen <= g.size \
                and g.total + plen <= MAX_BYTES - hl and len(g.parts) + 1 < MAX_UDP_SEGMENTS:
            g.parts.append(pkt[hl:])
            g.last = plen
            g.total += plen
            self.coalesced += 1
            return
        g = _Group(pkt, ihl, hl, sig, b"", 0, plen, False, True)
        self._uflows[key] = g
        self._out.append(g)

    def flush(self) -> list[bytes]:
        """The TUN writes for everything added since the last flush, each with its header."""
        out: list[bytes] = []
        for item in self._out:
            if type(item) is bytes:
                out.append(PLAIN + item)
            elif not item.parts:
                out.append(PLAIN + item.first)
            else:
                out.append(_super_packet(item))
        self._out.clear()
        self._flows.clear()
        self._uflows.clear()
        self._last = None
        return out


def _super_packet(g: _Group) -> bytes:
    first, ihl, hl = g.first, g.ihl, g.hl
    h = bytearray(first[:hl])
    total = hl + g.total
    v6 = ihl == 40
    if v6:
        h[4:6] = (total - 40).to_bytes(2, "big")
        src, dst = first[8:24], first[24:40]
    else:
        h[2:4] = total.to_bytes(2, "big")
        h[10:12] = b"\x00\x00"
        h[10:12] = ck.ipv4_header_checksum(h[:20]).to_bytes(2, "big")
        src, dst = first[12:16], first[16:20]
    l4_len = total - ihl
    if g.udp:
        proto, csum_at, gso = ck.PROTO_UDP, 6, GSO_UDP_L4
        h[ihl + 4:ihl + 6] = l4_len.to_bytes(2, "big")
    else:
        proto, csum_at, gso = ck.PROTO_TCP, 16, GSO_TCPV6 if v6 else GSO_TCPV4
        if g.psh:
            h[ihl + 13] |= TCP_PSH
    partial = ck.fold(ck.pseudo_sum(src, dst, proto) + l4_len)
    h[ihl + csum_at:ihl + csum_at + 2] = partial.to_bytes(2, "big")
    vnet = encode(F_NEEDS_CSUM, gso, hl, g.size, ihl, csum_at)
    return b"".join((vnet, h, first[hl:], *g.parts))
