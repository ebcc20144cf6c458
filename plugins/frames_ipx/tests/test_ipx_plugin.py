"""The ipx plugin installs, registers under shoal.plugins and validates its table."""

import pytest
from shoal.config import NodeConfig, plugin_settings
from shoal.errors import ConfigError
from shoal.plugins import list_plugins, load_plugins


def cfg(table: str) -> NodeConfig:
    import tomllib

    data = tomllib.loads(f'name = "n"\nstate_dir = "/tmp/n"\nplugins = ["ipx"]\n'
                        f'[interface]\naddress = "100.64.0.1/10"\n[plugin.ipx]\n{table}\n')
    return NodeConfig.model_validate(data)


def test_registered():
    assert "ipx" in {i.name for i in list_plugins()}
    pm = load_plugins(["ipx"])
    assert pm.has_plugin("ipx")


def test_settings_validated():
    pm = load_plugins(["ipx"])
    assert plugin_settings(cfg('ipxnet_listen = "127.0.0.1:213"'), pm)["ipx"] is not None
    with pytest.raises(ConfigError, match=r"plugin\.ipx\."):
        plugin_settings(cfg('ipxnet_listen = "localhost"'), pm)
    with pytest.raises(ConfigError, match="unknown key"):
        plugin_settings(cfg("bogus = 1"), pm)


# ------------------------------------------------------------------ wiring into a node
from types import SimpleNamespace

from shoal.identity import StaticKeypair
from shoal.testing.fakes import FakeNodeHandle
from shoal_frames_ipx.frame_counter import IpxFrameCounter
from shoal_frames_ipx.framing import IpxFraming, frame_ipx
from shoal_frames_ipx.plugin import IpxPlugin


def test_bridge_peers_are_the_peers_sharing_a_network():
    keys = {n: StaticKeypair.generate().public for n in ("bob", "carol", "static1", "x")}
    vip = {"bob": b"\x64\x40\x00\x03", "carol": b"\x64\x40\x00\x04", "static1": b"\x64\x40\x00\x05",
           "x": b"\x64\x40\x00\x06"}
    node = FakeNodeHandle("ipx")
    node.peer_map.update({k: SimpleNamespace(name=n, vip_packed=vip[n]) for n, k in keys.items()})
    node.peer_networks.update({keys["bob"]: ["lan"], keys["carol"]: ["lan", "games"],
                          keys["static1"]: ["static"], keys["x"]: []})
    rt = IpxPlugin(node)
    assert rt.peer_ips() == {vip["bob"], vip["carol"], vip["static1"]}
    assert rt.peer_name(vip["carol"]) == "carol" and rt.peer_name(b"\x01\x02\x03\x04") == "1.2.3.4"
    status: dict = {}
    rt.status(status)
    assert status["ipx"] == {"ipxnet": None, "frames": None, "frames_error": None}


def test_frame_counter_counts_by_framing_and_direction():
    fc = IpxFrameCounter()
    ipx = b"\xff\xff\x00\x1e" + b"\x00" * 26
    for f in IpxFraming:
        fc.count(frame_ipx(f, b"\xff" * 6, b"\x02" * 6, ipx), outgoing=True)
    fc.count(frame_ipx(IpxFraming.SNAP, b"\xff" * 6, b"\x02" * 6, ipx), outgoing=False)
    fc.count(b"\xff" * 12 + b"\x08\x06" + b"\x00" * 28, outgoing=False)  # ARP: not counted
    assert fc.counts == {"tx": {"ethernet_ii": 1, "raw_802_3": 1, "llc_802_2": 1, "snap": 1},
                         "rx": {"ethernet_ii": 0, "raw_802_3": 0, "llc_802_2": 0, "snap": 1}}
