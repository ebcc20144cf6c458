"""Metrics rendering: node and server collectors, exposition parsed back with
prometheus-client's own parser, and the endpoint over loopback HTTP."""

from __future__ import annotations

import asyncio
import socket
import urllib.error
import urllib.request
from types import SimpleNamespace

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from shoal import wire
from shoal.config import ServerConfig, load_node_config
from shoal.control import messages as m
from shoal.engine import Engine
from shoal.errors import ConfigError
from shoal.identity import StaticKeypair
from shoal.metrics import MetricsEndpoint, NodeCollector, new_registry
from shoal.server.app import Server
from shoal.server.metrics import ServerCollector
from shoal.testing.fakes import FakeNetwork, FakeTun, ipv4_packet

A_EP, B_EP = ("198.51.100.1", 41641), ("198.51.100.2", 41641)
A_IP, B_IP = "100.64.0.1", "100.64.0.2"


def samples(registry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def engines() -> tuple[Engine, Engine, FakeTun, object]:
    net = FakeNetwork()
    ka, kb = StaticKeypair.generate(), StaticKeypair.generate()
    tun_a, tun_b = FakeTun(), FakeTun()
    a = Engine(ka, tun_a.fileno(), net.transport(A_EP), (wire.CIPHER_CHACHA20_POLY1305,))
    b = Engine(kb, tun_b.fileno(), net.transport(B_EP), (wire.CIPHER_CHACHA20_POLY1305,))
    a.add_peer("bob", kb.public, B_IP, B_EP)
    b.add_peer("alice", ka.public, A_IP, A_EP)
    await a.start(autotick=False)
    await b.start(autotick=False)
    return a, b, tun_a, (tun_b, ka)


def fake_node(eng: Engine, key: StaticKeypair) -> SimpleNamespace:
    return SimpleNamespace(cfg=SimpleNamespace(name="alice"), control=None, keypair=key,
                           engine=eng, virtual_ip=A_IP)


def test_node_metrics_follow_the_engine_counters() -> None:
    async def main() -> None:
        a, b, tun_a, (tun_b, ka) = await engines()
        reg = new_registry(NodeCollector(fake_node(a, ka)))
        bob = a.peers[next(iter(a.peers))]
        labels = (("peer", "bob"), ("public_key", bob.public_key_b64))
        before = samples(reg)
        assert before[("shoal_peer_tx_bytes_total", labels)] == 0
        assert before[("shoal_peer_online", labels)] == 0
        assert before[("shoal_peer_path_info",
                       tuple(sorted(labels + (("path", "none"), ("transport", "")))))] == 1
        for _ in range(3):
            tun_a.inject(ipv4_packet(A_IP, B_IP, b"x" * 100))
        for _ in range(20):
            await asyncio.sleep(0.005)
        tun_b.inject(ipv4_packet(B_IP, A_IP, b"y" * 50))   # the answer makes bob live
        for _ in range(20):
            await asyncio.sleep(0.005)
        a.on_datagram(b"\xffgarbage", B_EP)       # one malformed datagram
        after = samples(reg)
        assert after[("shoal_peer_tx_bytes_total", labels)] == 3 * 120
        assert after[("shoal_peer_tx_packets_total", labels)] == 3
        assert after[("shoal_peer_handshakes_total", labels)] == 1
        assert after[("shoal_peer_rx_bytes_total", labels)] == 70
        assert after[("shoal_peer_online", labels)] == 1
        assert after[("shoal_peer_rtt_seconds", labels)] >= 0
        assert after[("shoal_peer_path_info",
                      tuple(sorted(labels + (("path", "direct"), ("transport", "fake")))))] == 1
        assert after[("shoal_drops_total", (("reason", "malformed"),))] == 1
        assert after[("shoal_drops_total", (("reason", "auth"),))] == 0
        assert after[("shoal_node_online", ())] == 1
        assert after[("shoal_node_info", (("name", "alice"), ("public_key", ka.public_b64),
                                          ("version", __import__("shoal").__version__),
                                          ("virtual_ip", A_IP)))] == 1
        assert ("process_resident_memory_bytes", ()) in after
        a.stop()
        b.stop()
    asyncio.run(main())


def test_node_metrics_before_the_engine_exists() -> None:
    node = SimpleNamespace(cfg=SimpleNamespace(name="n"), control=None, keypair=None,
                           engine=None, virtual_ip=None)
    s = samples(new_registry(NodeCollector(node)))
    assert s[("shoal_node_online", ())] == 1
    assert not any(name.startswith("shoal_peer") for name, _ in s)


def test_server_metrics(tmp_path) -> None:
    cfg = ServerConfig(state_dir=str(tmp_path), listen="127.0.0.1:7400")
    srv = Server(cfg, StaticKeypair.generate())
    reg = new_registry(ServerCollector(srv))
    s0 = samples(reg)
    assert s0[("shoal_server_nodes_online", ())] == 0
    assert s0[("shoal_server_presence_fanout_seconds_count", (("event", "login"),))] == 0
    keys = [StaticKeypair.generate().public_b64 for _ in range(3)]
    import time

    for i, k in enumerate(keys):
        t0 = time.perf_counter()
        _, out = srv.coord.login(k, m.Hello(name=f"n{i}"), "198.51.100.7")
        srv.timings.presence("login", t0, len(out))
    srv.coord.create(keys[0], m.CreateArgs(name="lan", password="pw"), "hash")
    srv.coord.join(keys[1], "lan", True)
    s = samples(reg)
    assert s[("shoal_server_nodes_online", ())] == 3
    assert s[("shoal_server_nodes", ())] == 3
    assert s[("shoal_server_networks", ())] == 1
    assert s[("shoal_server_members", (("status", "active"),))] == 2
    assert s[("shoal_server_presence_fanout_seconds_count", (("event", "login"),))] == 3
    assert s[("shoal_server_presence_messages_total", (("event", "login"),))] >= 3
    # every store call is timed: three nodes, one network, two members
    assert s[("shoal_server_store_seconds_count", (("op", "put_node"),))] == 3
    assert s[("shoal_server_store_seconds_count", (("op", "put_member"),))] == 2
    srv.store.close()


def _get(url: str, **headers: str) -> tuple[int, str, str]:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.headers.get("content-type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type", ""), e.read().decode()


def test_endpoint_serves_text_and_openmetrics() -> None:
    async def main() -> None:
        node = SimpleNamespace(cfg=SimpleNamespace(name="n"), control=None, keypair=None,
                               engine=None, virtual_ip=None)
        listen = f"127.0.0.1:{free_port()}"
        ep = MetricsEndpoint(listen, new_registry(NodeCollector(node)))
        await ep.start()
        try:
            loop = asyncio.get_running_loop()
            code, ctype, body = await loop.run_in_executor(None, _get, f"http://{listen}/metrics")
            assert code == 200 and ctype.startswith("text/plain")
            names = {f.name for f in text_string_to_metric_families(body)}
            assert {"shoal_node_online", "shoal_node_info"} <= names
            code, ctype, body = await loop.run_in_executor(
                None, lambda: _get(f"http://{listen}/metrics",
                                   Accept="application/openmetrics-text"))
            assert code == 200 and ctype.startswith("application/openmetrics-text")
            assert body.rstrip().endswith("# EOF")
            code, _, _ = await loop.run_in_executor(None, _get, f"http://{listen}/nope")
            assert code == 404
        finally:
            await ep.close()
    asyncio.run(main())


def test_endpoint_refuses_malformed_and_oversized_requests() -> None:
    async def main() -> None:
        node = SimpleNamespace(cfg=SimpleNamespace(name="n"), control=None, keypair=None,
                               engine=None, virtual_ip=None)
        port = free_port()
        ep = MetricsEndpoint(f"127.0.0.1:{port}", new_registry(NodeCollector(node)))
        await ep.start()
        try:
            async def exchange(raw: bytes) -> bytes:
                r, w = await asyncio.open_connection("127.0.0.1", port)
                w.write(raw)
                data = await asyncio.wait_for(r.read(), 5)
                w.close()
                return data
            assert (await exchange(b"garbage\r\n\r\n")).startswith(b"HTTP/1.1 400")
            big = b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n"
            assert (await exchange(big)).startswith(b"HTTP/1.1 413")
            huge_head = b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 100_000 + b"\r\n\r\n"
            assert (await exchange(huge_head)).startswith(b"HTTP/1.1 431")
            ok = await exchange(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert ok.startswith(b"HTTP/1.1 200")
        finally:
            await ep.close()
    asyncio.run(main())


def test_metrics_config(tmp_path) -> None:
    base = 'name = "a"\nstate_dir = "/tmp/a"\n[interface]\naddress = "100.64.0.2/10"\n'
    p = tmp_path / "n.toml"
    p.write_text(base)
    assert load_node_config(p).metrics.listen is None          # off by default
    p.write_text(base + '[metrics]\nlisten = "127.0.0.1:9464"\n')
    assert load_node_config(p).metrics.listen == "127.0.0.1:9464"
    p.write_text(base + '[metrics]\nlisten = "localhost"\n')
    with pytest.raises(ConfigError, match="metrics.listen"):
        load_node_config(p)
    p.write_text(base + '[metrics]\nport = 9464\n')
    with pytest.raises(ConfigError, match="metrics.port: unknown key"):
        load_node_config(p)
    ServerConfig(state_dir="/tmp/s", metrics={"listen": "127.0.0.1:9465"},
                 admin={"listen": "127.0.0.1:7480"})
