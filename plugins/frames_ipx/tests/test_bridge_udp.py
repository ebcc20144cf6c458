"""Two IPXNET services on real loopback sockets, with DOSBox-compatible clients.

127.0.0.2 and 127.0.0.3 stand in for the overlay addresses of two nodes.
"""

from __future__ import annotations

import asyncio
import socket

from shoal_frames_ipx.bridge import IpxnetService
from shoal_frames_ipx.dosbox_client import IpxnetClient
from shoal_frames_ipx.ipx_header import BROADCAST_NODE

A_IP, B_IP = "127.0.0.2", "127.0.0.3"


def free_port(ip: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


def test_two_nodes_dosbox_clients_broadcast_unicast_and_ping():
    async def main():
        port = free_port(A_IP)
        a = IpxnetService(("127.0.0.1", 0), port, lambda: A_IP, lambda: {socket.inet_aton(B_IP)})
        b = IpxnetService(("127.0.0.1", 0), port, lambda: B_IP, lambda: {socket.inet_aton(A_IP)})
        await a.start()
        await b.start()
        for _ in range(100):
            if a.status(str)["bridge"] and b.status(str)["bridge"]:
                break
            await asyncio.sleep(0.02)
        ca, cb = IpxnetClient(a.listen), IpxnetClient(b.listen)
        na = await asyncio.to_thread(ca.register)
        nb = await asyncio.to_thread(cb.register)
        assert na[:4] == socket.inet_aton(A_IP) and nb[:4] == socket.inet_aton(B_IP)
        assert int.from_bytes(na[4:], "big") == ca.sock.getsockname()[1]

        ca.send(BROADCAST_NODE, b"who's there?")
        h, p = await asyncio.to_thread(cb.recv, 2.0)
        assert p == b"who's there?" and h.src.node == na and h.is_broadcast
        cb.send(h.src.node, b"bob here")
        h, p = await asyncio.to_thread(ca.recv, 2.0)
        assert p == b"bob here" and h.src.node == nb and not h.is_broadcast

        # ipxnet ping: b's client answers while it waits for data, like DOSBox
        waiter = asyncio.create_task(asyncio.to_thread(cb.recv, 1.5))
        replies = await asyncio.to_thread(ca.ping, 1.0)
        assert replies == [nb]
        assert await waiter is None

        sa, sb = a.status(socket.inet_ntoa), b.status(socket.inet_ntoa)
        assert sa["client_count"] == 1 and sa["remote_clients_per_node"] == {B_IP: 1}
        assert sb["counters"]["from_nodes"] == 2 and sb["counters"]["to_nodes"] == 2
        assert sa["error"] is None and sa["bridge"] == f"{A_IP}:{port}"
        ca.close()
        cb.close()
        a.close()
        b.close()

    asyncio.run(main())


def test_listen_failure_is_reported_not_raised():
    async def main():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
            taken.bind(("127.0.0.1", 0))
            svc = IpxnetService(taken.getsockname(), 1, lambda: None, set)
            await svc.start()
            assert "cannot listen on 127.0.0.1" in svc.status(str)["error"]
            svc.close()

    asyncio.run(main())
