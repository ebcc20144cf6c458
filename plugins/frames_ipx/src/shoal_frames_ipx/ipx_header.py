"""The IPX header (Novell IPX, 30 bytes, all fields big-endian), pure codec.

::

     0       2       4    5    6          10                16      18
    +-------+-------+----+----+----------+-----------------+-------+
    | cksum | length| tc |type| dst net  | dst node        |dst skt|
    +-------+-------+----+----+----------+-----------------+-------+
    18         22                28      30
    +----------+-----------------+-------+---------------------------
    | src net  | src node        |src skt| payload (length - 30 bytes)
    +----------+-----------------+-------+---------------------------

* ``cksum`` is 0xFFFF ("no checksum") in practice; any value is accepted.
* ``length`` covers header and payload. It must be at least 30 and at most
  the datagram; bytes after ``length`` are ignored (tolerant of trailers,
  e.g. Ethernet padding).
* ``tc`` is the transport control (hop count), ``type`` the packet type
  (0 unknown, 1 RIP, 4 PEP/IPX, 5 SPX, 17 NCP).
* A node of ``ff:ff:ff:ff:ff:ff`` is the broadcast node.

DOSBox's IPXNET carries exactly these datagrams over UDP, one per datagram,
and uses two of them as its own signalling (see ``ipxnet.py``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

HEADER_LEN = 30
BROADCAST_NODE = b"\xff" * 6
NO_CHECKSUM = 0xFFFF
ECHO_SOCKET = 2          # DOSBox uses the echo socket for registration and ping
PACKET_TYPE_PEP = 4

_HEADER = struct.Struct(">HHBB4s6sH4s6sH")


class MalformedIpx(ValueError):
    """Not an IPX datagram: dropped and counted by the receiver."""


@dataclass(frozen=True)
class IpxAddress:
    network: bytes = b"\x00" * 4
    node: bytes = b"\x00" * 6
    socket: int = 0

    def __post_init__(self) -> None:
        if len(self.network) != 4 or len(self.node) != 6 or not 0 <= self.socket <= 0xFFFF:
            raise ValueError("IPX address: network is 4 bytes, node 6 bytes, socket 16 bits")


@dataclass(frozen=True)
class IpxHeader:
    dest: IpxAddress
    src: IpxAddress
    packet_type: int = PACKET_TYPE_PEP
    transport_control: int = 0
    checksum: int = NO_CHECKSUM
    length: int = HEADER_LEN

    @property
    def is_broadcast(self) -> bool:
        return self.dest.node == BROADCAST_NODE


def decode(data: bytes) -> tuple[IpxHeader, bytes]:
    """Header and payload of one datagram; raises ``MalformedIpx``."""
    if len(data) < HEADER_LEN:
        raise MalformedIpx(f"{len(data)} bytes is shorter than an IPX header")
    (cksum, length, tc, ptype, dnet, dnode, dsock, snet, snode, ssock) = _HEADER.unpack_from(data)
    if not HEADER_LEN <= length <= len(data):
        raise MalformedIpx(f"length field {length} does not fit a {len(data)}-byte datagram")
    header = IpxHeader(IpxAddress(dnet, dnode, dsock), IpxAddress(snet, snode, ssock),
                       ptype, tc, cksum, length)
    return header, bytes(data[HEADER_LEN:length])


def encode(header: IpxHeader, payload: bytes = b"") -> bytes:
    """The datagram for ``header`` and ``payload``; the length field is computed."""
    d, s = header.dest, header.src
    return _HEADER.pack(header.checksum, HEADER_LEN + len(payload), header.transport_control,
                        header.packet_type, d.network, d.node, d.socket,
                        s.network, s.node, s.socket) + payload


def format_node(node: bytes) -> str:
    return ":".join(f"{b:02x}" for b in node)


def parse_node(text: str) -> bytes:
    node = bytes.fromhex(text.replace(":", "").replace("-", ""))
    if len(node) != 6:
        raise ValueError(f"{text!r} is not a 6-byte IPX node number")
    return node


# ------------------------------------------------------------ DOSBox signalling
def registration_request() -> bytes:
    """What ``ipxnet connect`` sends first: echo socket, all addresses zero."""
    z = IpxAddress(socket=ECHO_SOCKET)
    return encode(IpxHeader(z, z, packet_type=0))


def registration_reply(client_node: bytes, server_node: bytes) -> bytes:
    """The answer: the client learns its network (0) and node from the *destination*."""
    return encode(IpxHeader(IpxAddress(b"\x00" * 4, client_node, ECHO_SOCKET),
                            IpxAddress(b"\x00\x00\x00\x01", server_node, ECHO_SOCKET),
                            packet_type=0))


def ping_request(src_node: bytes) -> bytes:
    """``ipxnet ping``: a broadcast to the echo socket; every client answers."""
    return encode(IpxHeader(IpxAddress(node=BROADCAST_NODE, socket=ECHO_SOCKET),
                            IpxAddress(node=src_node, socket=ECHO_SOCKET), packet_type=0))


def ping_reply(dest_node: bytes, src_node: bytes) -> bytes:
    return encode(IpxHeader(IpxAddress(node=dest_node, socket=ECHO_SOCKET),
                            IpxAddress(node=src_node, socket=ECHO_SOCKET), packet_type=0))
