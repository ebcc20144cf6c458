"""Client and listener wired together in one process over loopback: relaying, pinning,
HTTP CONNECT proxies (working, refusing, going away and coming back), bad frames."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from dataclasses import dataclass

import pytest
from websockets.asyncio.client import connect

from shoal.transport import Readiness

from shoal_transport_relay import protocol as p
from shoal_transport_relay.protocol import make_token, network_tag
from shoal_transport_relay.service import RelayService
from shoal_transport_wss import pinning
from shoal_transport_wss.backoff import Backoff
from shoal_transport_wss.client import WssClient, WssGrant, WssState
from shoal_transport_wss.listener import WssListener
from shoal_transport_wss.proxy_connect import ProxyRefused, open_through_proxy

SECRET = os.urandom(32)
A_KEY, B_KEY = os.urandom(32), os.urandom(32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proxy:
    """A minimal HTTP CONNECT proxy (or one that refuses every CONNECT with 403)."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.requests: list[bytes] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.base_events.Server | None = None
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port,
                                                 reuse_address=True)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.transport.abort()
        self.writers.clear()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests.append(head)
        if self.refuse or not head.startswith(b"CONNECT "):
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        host, _, port = head.split(b" ")[1].decode().rpartition(":")
        r2, w2 = await asyncio.open_connection(host, int(port))
        self.writers.append(w2)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
            except ConnectionError:
                pass
            finally:
                w.close()

        await asyncio.gather(pipe(reader, w2), pipe(r2, writer))


@dataclass
class Relay:
    listener: WssListener
    service: RelayService
    fingerprint: str
    url: str
    task: asyncio.Task[None]

    def grant(self, key: bytes, fingerprint: str | None = None) -> WssGrant:
        expires = int(time.time()) + 3600
        tags = (network_tag("lan"),)
        return WssGrant(self.url, fingerprint or self.fingerprint,
                        make_token(SECRET, key, expires, tags), expires, tags)


async def start_relay(tmp_path) -> Relay:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    fp = pinning.fingerprint(pinning.ensure_certificate(cert, key, "127.0.0.1"))
    port = free_port()
    listener = WssListener(f"127.0.0.1:{port}", pinning.server_context(cert, key))
    service = RelayService(SECRET, None, None)
    task = asyncio.create_task(listener.run(service))
    await asyncio.wait_for(listener.ready.wait(), 5)
    return Relay(listener, service, fp, f"wss://127.0.0.1:{port}/shoal/relay", task)


async def start_client(key: bytes, grant: WssGrant, proxy: str | None = None
                       ) -> tuple[WssClient, asyncio.Queue]:
    got: asyncio.Queue = asyncio.Queue()
    c = WssClient(key, proxy, backoff=Backoff(first=0.05, cap=0.2))
    await c.start(asyncio.get_running_loop(), lambda data, ep: got.put_nowait((data, ep)))
    c.use_grant(grant)
    return c, got


async def until(cond, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.02)


def run(coro) -> None:
    asyncio.run(asyncio.wait_for(coro, 30))


def test_two_nodes_relay_through_wss_one_of_them_through_a_proxy(tmp_path):
    async def main() -> None:
        relay = await start_relay(tmp_path)
        proxy = Proxy()
        await proxy.start()
        a, _ = await start_client(A_KEY, relay.grant(A_KEY), proxy=proxy.url)
        b, b_got = await start_client(B_KEY, relay.grant(B_KEY))
        await until(lambda: a.ready and b.ready)
        assert proxy.requests[0].startswith(b"CONNECT 127.0.0.1:")
        a.send(b"sealed packet", ("relay", p.node_id(B_KEY).hex()))
        data, ep = await asyncio.wait_for(b_got.get(), 5)
        assert data == b"sealed packet" and ep == ("relay", p.node_id(A_KEY).hex())
        assert relay.service.core.counters.forwarded == 1
        assert a.status()["proxy"] == proxy.url and a.rtt_ms is not None
        for c in (a, b):
            c.close()
        relay.task.cancel()
        await proxy.stop()

    run(main())


def test_wrong_fingerprint_refused_with_one_clear_line(tmp_path, caplog):
    async def main() -> None:
        relay = await start_relay(tmp_path)
        c, _ = await start_client(A_KEY, relay.grant(A_KEY, fingerprint="sha256:" + "ab" * 32))
        await until(lambda: c.counters.pin_failures >= 2)
        assert c.state is not WssState.READY and c.counters.connects == 0
        assert not relay.service.core.by_id      # nothing was registered: no ALLOC was sent
        with pytest.raises(OSError):
            c.send(b"x", ("relay", p.node_id(B_KEY).hex()))
        c.close()
        relay.task.cancel()

    with caplog.at_level(logging.WARNING, logger="shoal_transport_wss"):
        run(main())
    lines = [r.getMessage() for r in caplog.records if "pinned" in r.getMessage()]
    assert len(lines) == 1, lines                # repeated failures are not logged again
    assert "\n" not in lines[0] and "refusing" in lines[0] and "sha256:abababab" in lines[0]
    assert caplog.records[0].levelno == logging.ERROR


def test_a_proxy_that_refuses_connect(tmp_path, caplog):
    async def main() -> None:
        relay = await start_relay(tmp_path)
        proxy = Proxy(refuse=True)
        await proxy.start()
        c, _ = await start_client(A_KEY, relay.grant(A_KEY), proxy=proxy.url)
        await until(lambda: c.counters.proxy_refusals >= 2)
        assert not c.ready and relay.listener.counters.connections == 0
        assert "refused CONNECT" in c.last_error and "403" in c.last_error
        c.close()
        relay.task.cancel()
        await proxy.stop()

    with caplog.at_level(logging.WARNING, logger="shoal_transport_wss"):
        run(main())
    assert any("refused CONNECT to 127.0.0.1" in r.getMessage() for r in caplog.records)


def test_proxy_goes_away_and_comes_back(tmp_path):
    async def main() -> None:
        relay = await start_relay(tmp_path)
        proxy = Proxy()
        await proxy.start()
        seen: list[Readiness] = []
        c, _ = await start_client(A_KEY, relay.grant(A_KEY), proxy=proxy.url)
        c.watch(lambda t, old, new, reason: seen.append(new))
        await until(lambda: c.ready)
        await proxy.stop()
        await until(lambda: not c.ready)
        assert seen == [Readiness.READY, Readiness.LOST] and c.counters.lost == 1
        await until(lambda: c.counters.failures >= 1)   # retries while the proxy is down
        await proxy.start()
        await until(lambda: c.ready)
        assert c.counters.connects == 2 and seen[-1] is Readiness.READY
        c.close()
        relay.task.cancel()
        await proxy.stop()

    run(main())


def test_relay_drops_and_counts_bad_frames_and_keeps_the_connection(tmp_path):
    async def main() -> None:
        relay = await start_relay(tmp_path)
        async with connect(relay.url, ssl=pinning.client_context(), proxy=None) as ws:
            await ws.send("text frame")
            await ws.send(b"XX\x03junk")
            await ws.send(b"SR\x03short")
            await until(lambda: relay.service.core.counters.dropped_malformed == 2
                        and relay.listener.dropped.text == 1)
            # SEND before ALLOC: refused (not registered), connection still open
            await ws.send(b"SR\x03" + bytes(8) + b"payload")
            assert (await asyncio.wait_for(ws.recv(), 5))[:3] == b"SR\x05"
        assert relay.service.core.counters.dropped_unregistered == 1
        # a path other than /shoal/relay is not served
        with pytest.raises(Exception, match="404"):
            await connect(relay.url.replace("/shoal/relay", "/other"),
                          ssl=pinning.client_context(), proxy=None)
        relay.task.cancel()

    run(main())


def test_client_counts_bad_frames_from_the_relay():
    c = WssClient(A_KEY)
    for junk in ("text", b"", b"XX", b"SR\x04" + bytes(8), b"SR\x07"):
        c._on_message(junk)
    assert c.status()["dropped"] == {"text": 1, "malformed": 3, "unknown": 1}


def test_control_connection_through_the_proxy():
    async def main() -> None:
        got: list[bytes] = []

        async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            got.append(await reader.readexactly(5))
            writer.write(b"world")
            await writer.drain()

        port = free_port()
        srv = await asyncio.start_server(server, "127.0.0.1", port)
        proxy = Proxy()
        await proxy.start()
        reader, writer = await open_through_proxy(proxy.url, "127.0.0.1", port)
        writer.write(b"hello")
        assert await asyncio.wait_for(reader.readexactly(5), 5) == b"world" and got == [b"hello"]
        writer.close()
        refusing = Proxy(refuse=True)
        await refusing.start()
        with pytest.raises(ProxyRefused) as e:
            await open_through_proxy(refusing.url, "127.0.0.1", port)
        assert str(e.value) == (f"proxy {refusing.url} refused CONNECT to 127.0.0.1:{port}: "
                                "HTTP 403 Forbidden")
        with pytest.raises(OSError):   # nobody listens there
            await open_through_proxy(f"http://127.0.0.1:{free_port()}", "127.0.0.1", port)
        srv.close()
        await proxy.stop()
        await refusing.stop()

    run(main())
