"""``shoal ping``: ICMP echo over the overlay, reporting the path each reply took.

The node sends echo requests from its own overlay address to the peer's, so
they travel exactly like user traffic (interface -> tunnel -> the peer's
current path) and the answer proves the whole data path works.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time

ECHO_REQUEST, ECHO_REPLY = 8, 0


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def echo_request(ident: int, seq: int, payload: bytes) -> bytes:
    header = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ECHO_REQUEST, 0, _checksum(header + payload), ident, seq) + payload


def parse_reply(packet: bytes, ident: int) -> int | None:
    """The sequence number of an echo reply for ``ident`` in a raw IPv4 packet, else None."""
    if len(packet) < 28:
        return None
    ihl = (packet[0] & 0x0F) * 4
    icmp = packet[ihl:]
    if len(icmp) < 8 or icmp[0] != ECHO_REPLY:
        return None
    _, _, _, rid, seq = struct.unpack("!BBHHH", icmp[:8])
    return seq if rid == ident else None


async def ping(src: str, dst: str, count: int, interval: float, timeout: float,
               on_reply: object = None) -> list[float | None]:
    """RTTs in ms (None for a lost probe)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setblocking(False)
    sock.bind((src, 0))
    ident = os.getpid() & 0xFFFF ^ int.from_bytes(os.urandom(2), "big")
    sent: dict[int, float] = {}
    got: dict[int, float] = {}
    done = asyncio.Event()

    def readable() -> None:
        while True:
            try:
                data, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            seq = parse_reply(data, ident)
            if seq is not None and seq in sent and seq not in got and addr[0] == dst:
                got[seq] = (time.monotonic() - sent[seq]) * 1000
                if len(got) == count:
                    done.set()

    loop.add_reader(sock.fileno(), readable)
    try:
        for seq in range(1, count + 1):
            sent[seq] = time.monotonic()
            sock.sendto(echo_request(ident, seq, b"shoal-ping" + bytes(22)), (dst, 0))
            if seq < count:
                await asyncio.sleep(interval)
        try:
            await asyncio.wait_for(done.wait(), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            pass
    finally:
        loop.remove_reader(sock.fileno())
        sock.close()
    return [got.get(seq) for seq in range(1, count + 1)]
