"""The relay plugin installs, registers under shoal.plugins and validates its table."""

import pytest

from shoal.config import NodeConfig, plugin_settings
from shoal.errors import ConfigError
from shoal.plugins import list_plugins, load_plugins


def cfg(table: str) -> NodeConfig:
    import tomllib

    data = tomllib.loads(f'name = "n"\nstate_dir = "/tmp/n"\nplugins = ["relay"]\n'
                        f'[interface]\naddress = "100.64.0.1/10"\n[plugin.relay]\n{table}\n')
    return NodeConfig.model_validate(data)


def test_registered():
    assert "relay" in {i.name for i in list_plugins()}
    pm = load_plugins(["relay"])
    assert pm.has_plugin("relay")


def test_settings_validated():
    pm = load_plugins(["relay"])
    assert plugin_settings(cfg('listen_udp = "203.0.113.10:3480"'), pm)["relay"] is not None
    with pytest.raises(ConfigError, match=r"plugin\.relay\."):
        plugin_settings(cfg('listen_udp = "nowhere"'), pm)
    with pytest.raises(ConfigError, match="unknown key"):
        plugin_settings(cfg("bogus = 1"), pm)


def test_grant_of_one_server_is_honoured_by_the_relay_beside_another(tmp_path):
    """A cluster: two servers with one secret_file. Server A's grant for a node opens
    a registration at the relay of server B (and a server with another secret is refused)."""
    import base64
    import time

    from shoal.config import ServerConfig
    from shoal.identity import StaticKeypair
    from shoal.plugin_context import PluginContext
    from shoal.testing.fakes import FakeServerHandle
    from shoal_transport_relay import protocol as p

    pm = load_plugins(["relay"])
    shared = tmp_path / "relay.secret"

    def server(name, secret_file):
        cfg = ServerConfig.model_validate({
            "state_dir": str(tmp_path / name), "listen": "127.0.0.1:7400", "plugins": ["relay"],
            "plugin": {"relay": {"listen_udp": "127.0.0.1:3480", "secret_file": str(secret_file)}}})
        srv = FakeServerHandle()
        ctx = PluginContext(cfg, plugin_settings(cfg, pm), server=srv)
        pm.hook.shoal_server_register_services(register=lambda *a: None, context=ctx)
        return srv

    a, b = server("a", shared), server("b", shared)
    other = server("c", tmp_path / "other.secret")
    node = StaticKeypair.generate()
    grant = a.relay_granters[0](node.public_b64, ["lan"])
    token = base64.b64decode(grant.token)
    now = time.time()
    alloc = p.encode_alloc(token, node.public, grant.expires, int(now * 1000),
                           [bytes.fromhex(t) for t in grant.tags])
    addr = ("tcp", "conn")
    assert b.published("relay").core.handle(alloc, addr, now, now, routable=True) == \
        [(addr, p.encode_alloced(int(now * 1000)))]
    refused = other.published("relay").core.handle(alloc, addr, now, now, routable=True)
    assert refused == [(addr, p.encode_refused(p.REFUSE_BAD_GRANT))]
