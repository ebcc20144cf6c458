"""UDP discovery endpoints of the coordination server (RFC 5780 style binding service).

The server listens on every address in ``discovery`` (typically two IPs x two
ports). A node asks one endpoint what source address it sees; it may ask for
the answer to come from a different IP and/or port, which is how it tells
endpoint-independent from address(-and-port)-dependent filtering.

Request (20 bytes)::

    0      4      5      6                      18    20
    | SHD1 | 0x01 | flags| transaction id (12)  | 0000 |
    flags: bit 0 = answer from the other IP, bit 1 = answer from the other port

Response (28 bytes)::

    | SHD1 | 0x02 | 0x00 | transaction id (12) | port u16 | IPv4 (4) | responder u8 | 000 |

``responder`` is the index (in config order) of the endpoint that sent the answer.
Requests that do not parse are dropped (and counted).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import struct

from shoal.config import parse_endpoint

log = logging.getLogger(__name__)

MAGIC = b"SHD1"
REQUEST, RESPONSE = 1, 2
CHANGE_IP, CHANGE_PORT = 1, 2
REQ = struct.Struct(">4sBB12s2x")
RESP = struct.Struct(">4sBB12sH4sB3x")


def encode_request(txid: bytes, flags: int = 0) -> bytes:
    return REQ.pack(MAGIC, REQUEST, flags, txid)


def decode_request(data: bytes) -> tuple[bytes, int] | None:
    if len(data) < REQ.size:
        return None
    magic, kind, flags, txid = REQ.unpack_from(data)
    if magic != MAGIC or kind != REQUEST or flags & ~(CHANGE_IP | CHANGE_PORT):
        return None
    return txid, flags


def encode_response(txid: bytes, addr: tuple[str, int], responder: int) -> bytes:
    return RESP.pack(MAGIC, RESPONSE, 0, txid, addr[1], ipaddress.IPv4Address(addr[0]).packed,
                     responder)


def decode_response(data: bytes) -> tuple[bytes, tuple[str, int], int] | None:
    if len(data) < RESP.size:
        return None
    magic, kind, _, txid, port, ip, responder = RESP.unpack_from(data)
    if magic != MAGIC or kind != RESPONSE:
        return None
    return txid, (str(ipaddress.IPv4Address(ip)), port), responder


def pick_responder(endpoints: list[tuple[str, int]], index: int, flags: int) -> int:
    """The endpoint that should answer a request received on ``index``."""
    host, port = endpoints[index]
    for j, (h, p) in enumerate(endpoints):
        if bool(flags & CHANGE_IP) == (h != host) and bool(flags & CHANGE_PORT) == (p != port):
            return j
    return -1  # no such endpoint configured: stay silent rather than lie


class _Responder(asyncio.DatagramProtocol):
    def __init__(self, index: int, group: list[tuple[str, int]],
                 transports: list[asyncio.DatagramTransport | None]) -> None:
        self.index = index
        self.group = group
        self.transports = transports
        self.dropped = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        req = decode_request(data)
        if req is None:
            self.dropped += 1
            return
        txid, flags = req
        j = pick_responder(self.group, self.index, flags)
        t = self.transports[j] if j >= 0 else None
        if t is not None:
            t.sendto(encode_response(txid, addr[:2], j), addr)


async def serve(endpoints: list[str]) -> list[asyncio.DatagramTransport]:
    loop = asyncio.get_running_loop()
    group = [parse_endpoint(e) for e in endpoints]
    transports: list[asyncio.DatagramTransport | None] = [None] * len(group)
    for i, (host, port) in enumerate(group):
        t, _ = await loop.create_datagram_endpoint(
            lambda i=i: _Responder(i, group, transports), local_addr=(host, port),
            family=socket.AF_INET)
        transports[i] = t
    return [t for t in transports if t is not None]
