"""The relay client notices a relay that stops answering over UDP, and comes back."""

import asyncio
import base64
import os
import socket
import time

from shoal.control import messages as m
from shoal.transport import Readiness

from shoal_transport_relay import protocol as p
from shoal_transport_relay.client import UDP_DEAD_AFTER, RelayClient
from shoal_transport_relay.service import RelayService

SECRET = os.urandom(32)
KEY = os.urandom(32)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def welcome(udp: str) -> m.Welcome:
    expires = int(time.time()) + 3600
    token = base64.b64encode(p.make_token(SECRET, KEY, expires)).decode()
    return m.Welcome(virtual_ip="100.64.0.2", prefix_len=10,
                     relays=[m.RelayGrant(token=token, expires=expires, endpoints={"x": "y"}),
                             m.RelayGrant(udp=udp, token=token, expires=expires)])


def test_relay_silent_over_udp_is_lost_quickly_and_found_again():
    async def main() -> None:
        where = f"127.0.0.1:{free_udp_port()}"
        service = RelayService(SECRET, where, None)
        task = asyncio.create_task(service.run())
        seen: list[tuple[Readiness, float]] = []
        client = RelayClient(KEY)
        client.watch(lambda t, old, new, reason: seen.append((new, time.monotonic())))
        await client.start(asyncio.get_running_loop(), lambda data, ep: None)
        client.on_welcome(welcome(where))   # the grant without udp/tcp is skipped
        for _ in range(100):
            if client.readiness is Readiness.READY:
                break
            await asyncio.sleep(0.05)
        assert client.readiness is Readiness.READY and client.mode == "udp"
        task.cancel()                       # the relay goes silent
        stopped = time.monotonic()
        for _ in range(100):
            if client.readiness is Readiness.LOST:
                break
            await asyncio.sleep(0.05)
        assert seen[-1][0] is Readiness.LOST
        assert seen[-1][1] - stopped < UDP_DEAD_AFTER + 1.0
        task = asyncio.create_task(RelayService(SECRET, where, None).run())   # back
        for _ in range(120):
            if client.readiness is Readiness.READY:
                break
            await asyncio.sleep(0.05)
        assert client.readiness is Readiness.READY
        client.close()
        task.cancel()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_udp_to_the_relay_dropped_moves_to_tcp_right_after_it_is_noticed():
    async def main() -> None:
        port = free_udp_port()
        udp, tcp = f"127.0.0.1:{port}", f"127.0.0.1:{port}"
        service = RelayService(SECRET, udp, tcp)
        task = asyncio.create_task(service.run())
        await asyncio.sleep(0.2)
        seen: list[tuple[Readiness, str, float]] = []
        client = RelayClient(KEY)
        client.watch(lambda t, old, new, reason: seen.append((new, reason, time.monotonic())))
        await client.start(asyncio.get_running_loop(), lambda data, ep: None)
        expires = int(time.time()) + 3600
        token = base64.b64encode(p.make_token(SECRET, KEY, expires)).decode()
        client.on_welcome(m.Welcome(virtual_ip="100.64.0.2", prefix_len=10, relays=[
            m.RelayGrant(udp=udp, tcp=tcp, token=token, expires=expires)]))
        for _ in range(100):
            if client.readiness is Readiness.READY:
                break
            await asyncio.sleep(0.05)
        assert client.mode == "udp"
        service._front_ends["udp"] = lambda where, msg: None   # the network drops UDP
        for _ in range(100):
            if client.readiness is Readiness.READY and client.mode == "tcp":
                break
            await asyncio.sleep(0.02)
        assert client.mode == "tcp" and client.readiness is Readiness.READY, seen
        lost = next(at for r, why, at in seen if r is Readiness.LOST)
        back = seen[-1][2]
        assert back - lost < 0.3, f"{back - lost:.2f} s from losing UDP to registering over TCP"
        client.close()
        task.cancel()

    asyncio.run(asyncio.wait_for(main(), 30))
