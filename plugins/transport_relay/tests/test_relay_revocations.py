"""The server pushes revocations to standalone relays over real sockets (loopback):
UDP, TCP for a relay announced with TCP only, and retries until confirmed."""

import asyncio
import os
import socket
import time

from prometheus_client import CollectorRegistry, generate_latest
from shoal_transport_relay import protocol as p
from shoal_transport_relay import revocations
from shoal_transport_relay.metrics import RelayCollector, RevocationPushCollector
from shoal_transport_relay.revocations import RevocationPusher
from shoal_transport_relay.service import RelayService

SECRET = os.urandom(32)
A_KEY, B_KEY = os.urandom(32), os.urandom(32)


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def register(service: RelayService, key: bytes, conn: str) -> None:
    """A registration over an attached in-memory front end (routable, like TCP), with a
    grant issued 5 s ago (revocations count in whole seconds)."""
    expires = int(time.time()) - 5 + 600
    tags = [p.network_tag("lan")]
    msg = p.encode_alloc(p.make_token(SECRET, key, expires, tags), key, expires,
                         int(time.time() * 1000), tags)
    service.receive(msg, ("mem", conn))
    assert p.node_id(key) in service.core.by_id


async def until(cond, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def run_with_relay(udp: bool, tcp: bool, body) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        u = f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}" if udp else None
        t = f"127.0.0.1:{free_port(socket.SOCK_STREAM)}" if tcp else None
        service = RelayService(SECRET, u, t)
        service.attach("mem", lambda conn, msg: None)
        task = asyncio.create_task(service.run())
        await asyncio.sleep(0.2)
        try:
            await body(service, u, t)
        finally:
            task.cancel()
    asyncio.run(main())


def test_revocation_reaches_a_standalone_relay_over_udp_at_once():
    async def body(service: RelayService, udp: str, tcp: str | None) -> None:
        register(service, A_KEY, "a")
        register(service, B_KEY, "b")
        pusher = RevocationPusher(SECRET, [(udp, None)])
        pusher.revoke(A_KEY)
        await until(lambda: pusher.confirmed == 1)
        assert p.node_id(A_KEY) not in service.core.by_id
        assert p.node_id(B_KEY) in service.core.by_id
        registry = CollectorRegistry()
        registry.register(RevocationPushCollector(pusher))
        registry.register(RelayCollector(service.core))
        text = generate_latest(registry).decode()
        assert 'shoal_relay_revocation_pushes_total{outcome="confirmed"} 1.0' in text, text
        assert "shoal_relay_revocations_total 1.0" in text, text
        pusher.close()
    run_with_relay(True, False, body)


def test_revocation_over_tcp_when_the_relay_is_announced_with_tcp_only():
    async def body(service: RelayService, udp: str | None, tcp: str) -> None:
        register(service, A_KEY, "a")
        pusher = RevocationPusher(SECRET, [(None, tcp)])
        pusher.revoke(A_KEY)
        await until(lambda: pusher.confirmed == 1)
        assert p.node_id(A_KEY) not in service.core.by_id
        pusher.close()
    run_with_relay(False, True, body)


def test_a_relay_with_another_secret_ignores_it_and_the_push_gives_up(monkeypatch):
    monkeypatch.setattr(revocations, "FIRST_WAIT", 0.02)

    async def body(service: RelayService, udp: str, tcp: str | None) -> None:
        register(service, A_KEY, "a")
        pusher = RevocationPusher(os.urandom(32), [(udp, None)])
        pusher.revoke(A_KEY)
        await until(lambda: pusher.unconfirmed == 1)
        assert p.node_id(A_KEY) in service.core.by_id
        assert service.core.counters.dropped_malformed == revocations.ATTEMPTS
        pusher.close()
    run_with_relay(True, False, body)


def test_a_lost_datagram_is_sent_again(monkeypatch):
    monkeypatch.setattr(revocations, "FIRST_WAIT", 0.05)

    async def main() -> None:
        # the relay starts only after the first attempt went unanswered
        udp = f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}"
        pusher = RevocationPusher(SECRET, [(udp, None)])
        pusher.revoke(A_KEY)
        await asyncio.sleep(0.08)
        service = RelayService(SECRET, udp, None)
        service.attach("mem", lambda conn, msg: None)
        task = asyncio.create_task(service.run())
        try:
            await until(lambda: pusher.confirmed == 1)
            assert service.core.revoked[p.node_id(A_KEY)] >= int(time.time()) - 2
        finally:
            task.cancel()
            pusher.close()
    asyncio.run(main())
