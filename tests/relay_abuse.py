"""Abuses a relay from a lab namespace (used by test_hardening_netns.py; not a test).

    relay_abuse.py SERVER SERVER_KEY RELAY_UDP TARGET_KEY MODE [NETWORK PASSWORD] [SPOOF_FROM]

Logs in to the coordination server with a fresh key (joining NETWORK if
given) to get a real relay grant, registers at the relay over UDP, then:

* ``send``: sends 100 relayed packets (unknown type byte, so the target
  counts them as malformed) to TARGET_KEY;
* ``spoof``: first sends a fresh, validly signed ALLOC for its own key from
  the spoofed source SPOOF_FROM (ip:port, a raw IPv4 socket), then does
  ``send`` from its real address;
* ``logout``: logs out (which revokes its grants), then for up to 5 s sends
  a SEND and an ALLOC with its old grant every 50 ms until the relay refuses
  both; prints the refusals and how long after the logout they came.

Prints one JSON line: replies received by kind.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import sys
import time

from shoal.control import messages as m
from shoal.control.client import ControlClient
from shoal.identity import StaticKeypair, decode_public_key
from shoal_transport_relay import protocol as p


def udp_packet(src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> bytes:
    length = 8 + len(payload)
    udp = struct.pack(">HHHH", src[1], dst[1], length, 0) + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + length, 0, 0x4000, 64, 17, 0,
                     socket.inet_aton(src[0]), socket.inet_aton(dst[0]))
    return ip + udp   # the kernel fills in the IP checksum; a zero UDP checksum is allowed


async def main() -> None:
    server, server_key, relay, target, mode = sys.argv[1:6]
    network = sys.argv[6] if len(sys.argv) > 6 else ""
    password = sys.argv[7] if len(sys.argv) > 7 else ""
    spoof = sys.argv[8] if len(sys.argv) > 8 else ""
    kp = StaticKeypair.generate()
    welcomed = asyncio.Event()
    grants: list[m.RelayGrant] = []

    def on_welcome(w: m.Welcome) -> None:
        grants[:] = list(w.relays)
        welcomed.set()

    def on_grants(g: m.Grants) -> None:
        grants[:] = list(g.relays)

    client = ControlClient(kp, "abuse", server, base64.b64decode(server_key), lambda: [],
                           lambda: 0, on_welcome, lambda _: None, on_grants=on_grants)
    task = asyncio.create_task(client.run())
    await asyncio.wait_for(welcomed.wait(), 10)
    if network:
        await client.request("join", {"name": network, "password": password})
        for _ in range(50):
            if grants and grants[0].tags:
                break
            await asyncio.sleep(0.1)
    # the grant for the relay under test (the server may announce several)
    g = next((x for x in grants if x.udp == relay), grants[0])
    token = base64.b64decode(g.token)
    tags = [bytes.fromhex(t) for t in g.tags]
    host, port = relay.rsplit(":", 1)
    dst = (host, int(port))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    s.connect(dst)

    def alloc(cookie: bytes = p.NO_COOKIE) -> bytes:
        return p.encode_alloc(token, kp.public, g.expires, int(time.time() * 1000), tags, cookie)

    s.send(alloc())
    ts, cookie = p.decode_challenge(s.recv(2048)) or (0, b"")
    s.send(alloc(cookie))
    assert s.recv(2048)[2] == p.ALLOCED
    if mode == "spoof":
        await asyncio.sleep(0.01)
        ip, sport = spoof.rsplit(":", 1)
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        for _ in range(3):
            await asyncio.sleep(0.01)
            raw.sendto(udp_packet((ip, int(sport)), dst, alloc(cookie)), (host, 0))
        await asyncio.sleep(0.2)
    if mode == "logout":
        await asyncio.sleep(1.1)   # revocations count whole seconds: log out in a later one
        task.cancel()
        await client.bye()
        out_at = time.monotonic()
        refusals: dict[str, float] = {}
        s.setblocking(False)
        while len(refusals) < 2 and time.monotonic() - out_at < 5:
            s.send(p.encode_send(p.node_id(decode_public_key(target)), b"\xfe"))
            s.send(alloc())
            await asyncio.sleep(0.05)
            while True:
                try:
                    r = s.recv(2048)
                except BlockingIOError:
                    break
                if r[2] == p.REFUSED and len(r) > 3:
                    refusals.setdefault(f"refused{r[3]}", round(time.monotonic() - out_at, 3))
        print(json.dumps({"refusals": refusals}), flush=True)
        return
    replies: dict[str, int] = {}
    dst_id = p.node_id(decode_public_key(target))
    s.setblocking(False)
    for _ in range(100):
        s.send(p.encode_send(dst_id, b"\xfe" + os.urandom(40)))
        await asyncio.sleep(0.002)
    await asyncio.sleep(0.3)
    while True:
        try:
            r = s.recv(2048)
        except BlockingIOError:
            break
        kind = {p.REFUSED: f"refused{r[3] if len(r) > 3 else ''}", p.DATA: "data"}.get(r[2], "other")
        replies[kind] = replies.get(kind, 0) + 1
    print(json.dumps({"replies": replies, "tags": len(tags)}), flush=True)
    task.cancel()
    await client.bye()


asyncio.run(main())
