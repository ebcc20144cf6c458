"""The TURN client against a real coturn on loopback (skipped when coturn is not installed).

UDP and TCP to the server, REST-API and long-term credentials, permissions,
Send indications and ChannelData both ways through the relay to a UDP echo
peer, release; a wrong secret and an unreachable server are one line each.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from shoal import stun
from shoal_transport_turn.client import ServerSpec, TurnClient, TurnFailed
from shoal_transport_turn.credentials import Credentials, rest_api

pytestmark = pytest.mark.skipif(shutil.which("turnserver") is None,
                                reason="needs coturn (Debian package 'coturn')")

SECRET = "loopback-secret"


def free_port() -> int:
    """A port free on loopback for UDP and TCP, and so is the next one (coturn's alt port)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        try:
            for p in (port, port + 1):
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    with socket.socket(socket.AF_INET, kind) as t:
                        t.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair on loopback")


def start_coturn(tmp: Path, auth: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    """coturn on a free loopback port (another is tried if that one is taken meanwhile)."""
    for attempt in range(3):
        port = free_port()
        try:
            return _start_coturn(tmp / str(attempt), port, auth), port
        except RuntimeError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _start_coturn(tmp: Path, port: int, auth: list[str]) -> subprocess.Popen[bytes]:
    tmp.mkdir(parents=True)
    log = open(tmp / "coturn.log", "wb")
    p = subprocess.Popen(
        ["turnserver", "-n", "--listening-ip=127.0.0.1", f"--listening-port={port}",
         "--relay-ip=127.0.0.1", "--min-port=49152", "--max-port=65535", "--no-tls",
         "--no-dtls", "--no-cli", "--fingerprint", "--realm=shoal.test", "--log-file=stdout",
         "--simple-log", "--allow-loopback-peers", f"--userdb={tmp}/coturn.sqlite",
         f"--pidfile={tmp}/coturn.pid", *auth], stdout=log, stderr=log,
        stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # ready: answers Binding
        s.settimeout(0.2)
        while time.monotonic() < deadline:
            if p.poll() is not None:
                raise RuntimeError((tmp / "coturn.log").read_text())
            s.sendto(stun.encode(stun.binding_request()), ("127.0.0.1", port))
            try:
                s.recv(2048)
                return p
            except (TimeoutError, ConnectionRefusedError):
                continue
    p.kill()
    p.wait()
    raise RuntimeError("coturn did not start: " + (tmp / "coturn.log").read_text()[-1500:])


@pytest.fixture(scope="module")
def coturn():
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        p, port = start_coturn(tmp / "secret", ["--use-auth-secret",
                                                f"--static-auth-secret={SECRET}"])
        lt, lt_port = start_coturn(tmp / "lt", ["--lt-cred-mech", "--user=alice:wonderland"])
        try:
            yield port, lt_port
        finally:
            for proc in (p, lt):
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport):  # type: ignore[no-untyped-def]
        self.t = transport

    def datagram_received(self, data, addr):  # type: ignore[no-untyped-def]
        self.t.sendto(b"echo:" + data, addr)


async def roundtrip(url: str, creds) -> dict:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    echo, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    peer = echo.get_extra_info("sockname")[:2]
    got: asyncio.Queue = asyncio.Queue()
    c = TurnClient(ServerSpec.parse(url), creds, lambda d, p: got.put_nowait((d, p)))
    try:
        await c.connect()
        relayed = await c.allocate()
        assert relayed[0] == "127.0.0.1" and c.ready
        assert await c.permit(peer[0])
        c.send(b"by indication", peer)
        assert await asyncio.wait_for(got.get(), 3) == (b"echo:by indication", peer)
        assert await c.bind(peer) is not None
        c.send(b"by channel", peer)
        assert await asyncio.wait_for(got.get(), 3) == (b"echo:by channel", peer)
        return c.describe()
    finally:
        await c.close()
        echo.close()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_rest_api_credentials_relay_both_ways(coturn, transport):
    port, _ = coturn
    d = asyncio.run(roundtrip(f"turn:127.0.0.1:{port}?transport={transport}",
                              lambda: rest_api(SECRET, "alice", 600, time.time())))
    assert d["state"] == "ready" and d["channels"] == 1 and d["error"] is None
    assert d["transport"] == transport and d["rtt_ms"] is not None
    assert SECRET not in str(d)


def test_long_term_credentials(coturn):
    _, lt_port = coturn
    d = asyncio.run(roundtrip(f"turn:127.0.0.1:{lt_port}",
                              lambda: Credentials("alice", "wonderland")))
    assert d["username"] == "alice" and "wonderland" not in str(d)


@pytest.mark.parametrize("url_port,creds,line", [
    ("secret", lambda: rest_api("wrong", "alice", 600, time.time()),
     "401 Unauthorized: wrong username or password (or shared secret)"),
    ("lt", lambda: Credentials("alice", "wrong"),
     "401 Unauthorized: wrong username or password (or shared secret)"),
    ("closed", lambda: Credentials("alice", "x"), "unreachable: no answer"),
])
def test_failures_are_one_line(coturn, url_port, creds, line):
    port = {"secret": coturn[0], "lt": coturn[1], "closed": free_port()}[url_port]

    async def main() -> str:
        c = TurnClient(ServerSpec.parse(f"turn:127.0.0.1:{port}"), creds, lambda d, p: None)
        await c.connect()
        with pytest.raises(TurnFailed) as e:
            await c.allocate()
        c.close_now()
        assert c.error == str(e.value)
        return str(e.value)

    assert asyncio.run(main()) == line
