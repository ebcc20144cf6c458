"""The broadcast plugin installs, registers under shoal.plugins and validates its table."""

import pytest
from shoal.config import NodeConfig, plugin_settings
from shoal.errors import ConfigError
from shoal.plugins import list_plugins, load_plugins


def cfg(table: str) -> NodeConfig:
    import tomllib

    data = tomllib.loads(f'name = "n"\nstate_dir = "/tmp/n"\nplugins = ["broadcast"]\n'
                        f'[interface]\naddress = "100.64.0.1/10"\n[plugin.broadcast]\n{table}\n')
    return NodeConfig.model_validate(data)


def test_registered():
    assert "broadcast" in {i.name for i in list_plugins()}
    pm = load_plugins(["broadcast"])
    assert pm.has_plugin("broadcast")


def test_settings_validated():
    pm = load_plugins(["broadcast"])
    assert plugin_settings(cfg('rate_limit_pps = 50'), pm)["broadcast"] is not None
    with pytest.raises(ConfigError, match=r"plugin\.broadcast\."):
        plugin_settings(cfg('rate_limit_pps = 0'), pm)
    with pytest.raises(ConfigError, match="unknown key"):
        plugin_settings(cfg("bogus = 1"), pm)


# ------------------------------------------------------------------ wiring into a node
import asyncio
from types import SimpleNamespace

from shoal.identity import StaticKeypair
from shoal.testing.fakes import FakeNodeHandle, ipv4_packet
from shoal_frames_broadcast.os_routes import route_commands
from shoal_frames_broadcast.plugin import BroadcastPlugin


def test_plugin_registers_a_flooder_that_uses_the_nodes_networks():
    async def main():
        pm = load_plugins(["broadcast"])
        keys = {n: StaticKeypair.generate().public for n in ("bob", "carol", "static1", "x")}
        node = FakeNodeHandle("broadcast")
        node.interface = None  # no interface to watch
        node.peer_networks.update({keys["bob"]: ["lan", "games"], keys["carol"]: ["lan"],
                              keys["static1"]: ["static"], keys["x"]: []})
        for n, k in keys.items():
            node.peer_map[k] = SimpleNamespace(name=n)
        plugin = pm.hook.shoal_node_plugin(node=node)[0]
        assert isinstance(plugin, BroadcastPlugin)
        plugin.start()
        assert len(node.frame_handlers) == 1
        assert node.frame_handlers[0](ipv4_packet("100.64.0.2", "255.255.255.255")) is True
        assert sorted(p.name for p, _ in node.sent) == ["bob", "carol", "static1"]
        status = {"node": {}}
        plugin.status(status)
        b = status["broadcast"]
        assert b["packets"] == 1 and b["copies"] == 3 and b["dropped_rate_limit"] == 0
        assert b["networks"] == {"games": {"packets": 1, "copies": 1},
                                 "lan": {"packets": 1, "copies": 2},
                                 "static": {"packets": 1, "copies": 1}}
        assert b["rate_limit_pps"] == 200 and b["burst"] == 200
        plugin.stop()

    asyncio.run(main())


def test_route_commands():
    cmds = [" ".join(c) for c in route_commands("shoal0", "100.64.0.2", 10)]
    assert "ip route replace 224.0.0.0/4 dev shoal0 metric 256" in cmds
    assert "ip -6 route replace multicast ff00::/8 dev shoal0 table local metric 255" in cmds
    assert "ip route replace 255.255.255.255/32 dev shoal0 src 100.64.0.2 metric 256" in cmds
    assert ("ip route replace broadcast 100.127.255.255 dev shoal0 table local proto kernel "
            "scope link src 100.64.0.2") in cmds
    assert not any("255.255.255.255" in c for c in
                   (" ".join(c) for c in route_commands("shoal0", None, None)))
