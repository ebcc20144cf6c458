"""The plugin contract inside a whole node (in memory): order is preference, handler
collisions are errors, and a third-party transport registered in-process carries traffic."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from shoal import identity
from shoal.config import NodeConfig
from shoal.errors import PluginError
from shoal.hookspecs import hookimpl
from shoal.node import Node
from shoal.plugin_api import NodeHandle, NodePlugin
from shoal.plugins import load_plugins
from shoal.testing.fakes import FakeNetwork, FakeTransport, FakeTun, ipv4_packet
from shoal.transport import PathKind

A_IP, B_IP = "100.64.0.1", "100.64.0.2"


class TransportPlugin(NodePlugin):
    def __init__(self, node: NodeHandle, transport: FakeTransport,
                 datagram_type: int | None = None) -> None:
        self.node = node
        self.transport = transport
        self.datagram_type = datagram_type

    def transports(self) -> list[FakeTransport]:
        return [self.transport]

    def start(self) -> None:
        if self.datagram_type is not None:
            self.node.register_datagram_handler(self.datagram_type, lambda d, a, t: None)


class ThirdParty:
    """An in-process plugin offering one in-memory transport."""

    def __init__(self, net: FakeNetwork, addr: tuple[str, int], name: str,
                 kind: PathKind = PathKind.DIRECT, datagram_type: int | None = None) -> None:
        self.net, self.addr, self.name, self.kind = net, addr, name, kind
        self.datagram_type = datagram_type

    @hookimpl
    def shoal_node_plugin(self, node: NodeHandle) -> NodePlugin:
        return TransportPlugin(node, self.net.transport(self.addr, self.name, self.kind),
                               self.datagram_type)


def node_config(tmp: Path, name: str, vip: str, peers: list[dict] | None = None) -> NodeConfig:
    return NodeConfig.model_validate({
        "name": name, "state_dir": str(tmp / name), "plugins": [],
        "interface": {"address": f"{vip}/10"}, "api": {"socket": str(tmp / f"{name}.sock")},
        "tunnel": {"keepalive": 1}, "peers": peers or []})


def make_node(cfg: NodeConfig, extra: list[tuple[str, object]]) -> tuple[Node, list[FakeTun]]:
    tuns: list[FakeTun] = []

    def tun_factory(_cfg: NodeConfig, _mac: bytes) -> FakeTun:
        tuns.append(FakeTun())
        return tuns[-1]

    return Node(cfg, pm=load_plugins([], extra=extra), tun_factory=tun_factory), tuns


async def wait_for(cond, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if cond():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


def test_third_party_transport_carries_a_ping(tmp_path):
    """Two nodes whose only transport is a third party's, addressed as ``third=host:port``."""
    ka = identity.load_or_create(tmp_path / "a")
    kb = identity.load_or_create(tmp_path / "b")
    net = FakeNetwork()
    a_ep, b_ep = ("192.0.2.1", 5000), ("192.0.2.2", 5000)
    cfg_a = node_config(tmp_path, "a", A_IP, [{"name": "b", "public_key": kb.public_b64,
                                               "endpoint": "third=192.0.2.2:5000",
                                               "virtual_ip": B_IP}])
    cfg_b = node_config(tmp_path, "b", B_IP, [{"name": "a", "public_key": ka.public_b64,
                                               "endpoint": "third=192.0.2.1:5000",
                                               "virtual_ip": A_IP}])
    a, tuns_a = make_node(cfg_a, [("third", ThirdParty(net, a_ep, "third"))])
    b, tuns_b = make_node(cfg_b, [("third", ThirdParty(net, b_ep, "third"))])

    async def main() -> None:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(a.run(stop)), asyncio.create_task(b.run(stop))]
        await asyncio.wait_for(asyncio.gather(a.ready.wait(), b.ready.wait()), 5)
        ping = ipv4_packet(A_IP, B_IP, b"ping")
        got: list[bytes] = []

        def delivered() -> bool:
            tuns_a[0].inject(ping)
            got.extend(tuns_b[0].delivered())
            return ping in got

        await wait_for(delivered)
        peer = a.status()["peers"][0]
        assert (peer["path"], peer["transport"], peer["endpoint"]) == \
            ("direct", "third", "192.0.2.2:5000")
        kinds = {t["plugin"]: t["kind"] for t in a.status()["node"]["transports"]}
        assert kinds == {"third": "direct"}
        stop.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())


def test_plugins_order_is_preference(tmp_path):
    """The first direct transport in ``plugins`` order is the main one, whichever way round."""
    identity.load_or_create(tmp_path / "a")
    net = FakeNetwork()
    for order in (["first", "second"], ["second", "first"]):
        plugins = {"first": ThirdParty(net, ("192.0.2.1", 1), "first"),
                   "second": ThirdParty(net, ("192.0.2.1", 2), "second")}
        node, _ = make_node(node_config(tmp_path, "a", A_IP), [(n, plugins[n]) for n in order])
        main = node._create_plugins()
        assert main.name == order[0]
        assert [node.plugin_of(t) for t in node.transports] == order


class _Dummy:
    """Enough of a handle for the udp and relay plugins' constructors."""

    keypair = identity.StaticKeypair.generate()

    def settings(self, model):
        return model()

    def host_addresses(self):
        return []


def test_configured_order_beats_pluggy_call_order(tmp_path):
    """pluggy calls hooks last-registered first; the node must not: udp stays first."""
    node = Node(node_config(tmp_path, "a", A_IP).model_copy(update={"plugins": ["udp", "relay"]}))
    node.keypair = identity.load_or_create(tmp_path / "a")
    pluggy_order = [type(p).__name__ for p in node.pm.hook.shoal_node_plugin(node=_Dummy())]
    assert pluggy_order == ["RelayNodePlugin", "UdpPlugin"]
    main = node._create_plugins()
    assert [node.plugin_of(t) for t in node.transports] == ["udp", "relay"]
    assert node.plugin_of(main) == "udp"


def test_datagram_type_collision_names_both_plugins(tmp_path):
    identity.load_or_create(tmp_path / "a")
    net = FakeNetwork()
    node, _ = make_node(node_config(tmp_path, "a", A_IP), [
        ("alpha", ThirdParty(net, ("192.0.2.1", 1), "alpha", datagram_type=0x42)),
        ("beta", ThirdParty(net, ("192.0.2.1", 2), "beta", datagram_type=0x42))])
    with pytest.raises(PluginError, match=r"plugins 'alpha' and 'beta' both register datagram "
                                          r"type 0x42"):
        asyncio.run(node.run(asyncio.Event()))


def test_core_datagram_types_are_reserved(tmp_path):
    identity.load_or_create(tmp_path / "a")
    node, _ = make_node(node_config(tmp_path, "a", A_IP), [
        ("alpha", ThirdParty(FakeNetwork(), ("192.0.2.1", 1), "alpha", datagram_type=0x04))])
    with pytest.raises(PluginError, match=r"'alpha': datagram type 0x04 is the core's own"):
        asyncio.run(node.run(asyncio.Event()))


class NotAPlugin:
    @hookimpl
    def shoal_node_plugin(self, node: NodeHandle) -> object:
        return object()


def test_hook_must_return_a_node_plugin(tmp_path):
    node, _ = make_node(node_config(tmp_path, "a", A_IP), [("odd", NotAPlugin())])
    with pytest.raises(PluginError, match=r"plugin 'odd': shoal_node_plugin returned a object"):
        node._create_plugins()


class RelayParty:
    """An in-process plugin offering a relayed in-memory transport (addressed by key)."""

    def __init__(self, net: FakeNetwork, name: str = "frelay") -> None:
        self.net, self.name = net, name

    @hookimpl
    def shoal_node_plugin(self, node: NodeHandle) -> NodePlugin:
        addr = ("relay", node.keypair.public.hex())
        return TransportPlugin(node, self.net.transport(addr, self.name, PathKind.RELAYED))


def test_path_choice_across_third_party_transports(tmp_path):
    """A direct third-party path is preferred to a relayed one; when it breaks the peer
    moves to the relayed path (probes find it usable) and back when it heals, with
    traffic flowing all along."""
    ka = identity.load_or_create(tmp_path / "a")
    kb = identity.load_or_create(tmp_path / "b")
    net = FakeNetwork()
    a_ep, b_ep = ("192.0.2.1", 5000), ("192.0.2.2", 5000)
    cfg_a = node_config(tmp_path, "a", A_IP, [{"name": "b", "public_key": kb.public_b64,
                                               "endpoint": "third=192.0.2.2:5000",
                                               "virtual_ip": B_IP}])
    cfg_b = node_config(tmp_path, "b", B_IP, [{"name": "a", "public_key": ka.public_b64,
                                               "endpoint": "third=192.0.2.1:5000",
                                               "virtual_ip": A_IP}])
    a, tuns_a = make_node(cfg_a, [("third", ThirdParty(net, a_ep, "third")),
                                  ("frelay", RelayParty(net))])
    b, tuns_b = make_node(cfg_b, [("third", ThirdParty(net, b_ep, "third")),
                                  ("frelay", RelayParty(net))])
    broken = {"on": False}

    def cut(data: bytes, src, dst) -> list[bytes]:
        direct = src in (a_ep, b_ep) and dst in (a_ep, b_ep)
        return [] if broken["on"] and direct else [data]

    net.filter = cut

    def path_of(node: Node) -> tuple[str, str]:
        p = node.status()["peers"][0]
        return p["path"], p["transport"]

    async def main() -> None:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(a.run(stop)), asyncio.create_task(b.run(stop))]
        await asyncio.wait_for(asyncio.gather(a.ready.wait(), b.ready.wait()), 5)
        n = [0]

        def ping() -> bool:
            n[0] += 1
            pkt = ipv4_packet(A_IP, B_IP, b"ping %d" % n[0])
            tuns_a[0].inject(pkt)
            return False

        async def flows() -> None:
            ping()
            seen = tuns_b[0].delivered()
            for _ in range(50):
                await asyncio.sleep(0.02)
                seen += tuns_b[0].delivered()
                if seen:
                    return
            raise AssertionError("no traffic")

        await flows()
        await wait_for(lambda: path_of(a) == ("direct", "third"))
        # the relayed path is probed and usable in the background
        await wait_for(lambda: any(x["transport"] == "frelay" and x["state"] == "usable"
                                   for x in a.status()["peers"][0]["paths"]))
        broken["on"] = True
        await wait_for(lambda: path_of(a) == ("relay", "frelay"), timeout=8)
        await flows()
        broken["on"] = False
        await wait_for(lambda: path_of(a) == ("direct", "third"), timeout=8)
        await flows()
        stop.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())


class SignalParty:
    """An in-process plugin that handles signals of one kind."""

    def __init__(self, kind: str, got: list) -> None:
        self.kind, self.got = kind, got

    @hookimpl
    def shoal_node_plugin(self, node: NodeHandle) -> NodePlugin:
        party = self

        class P(NodePlugin):
            def start(self) -> None:
                node.register_signal_handler(party.kind, lambda k, d: party.got.append((k, d)))

        return P()


def test_signals_reach_the_plugin_of_their_kind_and_kinds_collide_loudly(tmp_path):
    from shoal.control import messages as m

    identity.load_or_create(tmp_path / "a")
    net, got = FakeNetwork(), []
    node, _ = make_node(node_config(tmp_path, "a", A_IP), [
        ("third", ThirdParty(net, ("192.0.2.1", 1), "third")), ("sig", SignalParty("sig", got))])

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(node.run(stop))
        await asyncio.wait_for(node.ready.wait(), 5)
        sender = identity.StaticKeypair.generate().public_b64
        node._on_signal(m.Signal(sender=sender, kind="sig", data="hello"))
        node._on_signal(m.Signal(sender=sender, kind="other", data="dropped"))
        assert got == [(identity.decode_public_key(sender), "hello")]
        stop.set()
        await task

    asyncio.run(main())
    clash, _ = make_node(node_config(tmp_path, "a", A_IP), [
        ("third", ThirdParty(net, ("192.0.2.1", 2), "third")),
        ("one", SignalParty("sig", [])), ("two", SignalParty("sig", []))])
    with pytest.raises(PluginError, match=r"plugins 'one' and 'two' both handle signal kind"):
        asyncio.run(clash.run(asyncio.Event()))
