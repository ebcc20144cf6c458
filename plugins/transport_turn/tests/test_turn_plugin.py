"""The turn plugin installs, registers under shoal.plugins and validates its table."""

import tomllib

import pytest
from shoal.config import NodeConfig, plugin_settings
from shoal.errors import ConfigError
from shoal.plugins import list_plugins, load_plugins


def cfg(table: str) -> NodeConfig:
    return NodeConfig.model_validate(tomllib.loads(
        'name = "n"\nstate_dir = "/tmp/n"\nplugins = ["turn"]\n'
        f'[interface]\naddress = "100.64.0.1/10"\n{table}\n'))


def test_registered():
    assert "turn" in {i.name for i in list_plugins()}
    assert load_plugins(["turn"]).has_plugin("turn")


def test_settings_validated_and_secrets_hidden():
    pm = load_plugins(["turn"])
    s = plugin_settings(cfg('[[plugin.turn.servers]]\nurl = "turn:203.0.113.20:3478"\n'
                            'secret = "s3cret"\n[[plugin.turn.servers]]\n'
                            'url = "turns:turn.example.org"\nusername = "a"\npassword = "pw"\n'),
                        pm)["turn"]
    assert len(s.servers) == 2 and "s3cret" not in repr(s) and "'pw'" not in repr(s)
    for bad, key in [('url = "stun:1.2.3.4"\nsecret = "x"', "url"),
                     ('url = "turn:1.2.3.4"', "secret"),
                     ('url = "turn:1.2.3.4"\nsecret = "x"\nusername = "u"', "either"),
                     ('url = "turn:1.2.3.4"\nusername = "u"', "password"),
                     ('url = "turn:1.2.3.4"\nsecret = "x"\nbogus = 1', "unknown key")]:
        with pytest.raises(ConfigError, match=key):
            plugin_settings(cfg(f"[[plugin.turn.servers]]\n{bad}\n"), pm)
    with pytest.raises(ConfigError, match=r"plugin\.turn\.servers"):
        plugin_settings(cfg('[[plugin.turn.servers]]\nurl = "turn:1.2.3.4"\nsecret = "x"\n'
                            '[[plugin.turn.servers]]\nurl = "turn:1.2.3.4"\nsecret = "x"\n' * 5),
                        pm)


def test_announced_servers_reach_a_node_with_credentials_for_its_key():
    import base64
    import hashlib
    import hmac
    from types import SimpleNamespace

    from shoal.control.messages import Grants, RelayGrant, Welcome
    from shoal.testing.fakes import FakeNodeHandle
    from shoal_transport_turn.client import ServerSpec
    from shoal_transport_turn.plugin import TurnNodePlugin, TurnSettings, announced_grant

    secret = "lab-turn-secret"
    node = FakeNodeHandle("turn", config=SimpleNamespace(name="n"), settings=TurnSettings())
    plugin = TurnNodePlugin(node)
    assert plugin.transports() == [plugin.transport] and plugin.transport.servers == []
    key = node.keypair.public_b64
    url = "turn:203.0.113.20:3478"
    g = announced_grant(url, secret, key, 3600, now=1_800_000_000)
    assert g.expires == 1_800_003_600 and secret not in g.model_dump_json()
    other = RelayGrant(udp="203.0.113.10:3480", token="x", expires=1)   # a relay's grant
    plugin.on_login(Welcome(virtual_ip="100.64.0.2", prefix_len=10, relays=[other, g]))
    (spec, creds), = plugin.transport.servers
    assert spec == ServerSpec.parse(url) and plugin.transport.announced
    c = creds()
    # what coturn's use-auth-secret checks: password = base64(HMAC-SHA1(secret, username))
    assert c.username == f"1800003600:{key}"
    assert c.password == base64.b64encode(
        hmac.new(secret.encode(), c.username.encode(), hashlib.sha1).digest()).decode()
    # a refreshed grant: the same server, the newest credential
    plugin.on_grants(Grants(relays=[announced_grant(url, secret, key, 3600, now=1_800_000_600)]))
    assert creds().username == f"1800004200:{key}" and len(plugin.transport.servers) == 1
    assert plugin.transport.describe()["servers"][0]["announced"] is True
    # no longer announced: dropped
    plugin.on_grants(Grants(relays=[other]))
    assert plugin.transport.servers == []


def test_a_server_the_node_configures_wins_over_the_same_one_announced():
    from types import SimpleNamespace

    from shoal.control.messages import Grants
    from shoal.testing.fakes import FakeNodeHandle
    from shoal_transport_turn.plugin import TurnNodePlugin, announced_grant

    pm = load_plugins(["turn"])
    s = plugin_settings(cfg('[[plugin.turn.servers]]\nurl = "turn:203.0.113.20:3478"\n'
                            'username = "me"\npassword = "mine"\n'), pm)["turn"]
    node = FakeNodeHandle("turn", config=SimpleNamespace(name="n"), settings=s)
    plugin = TurnNodePlugin(node)
    plugin.on_grants(Grants(relays=[
        announced_grant("turn:203.0.113.20:3478", "x", node.keypair.public_b64, 600),
        announced_grant("turn:203.0.113.21:3478", "x", node.keypair.public_b64, 600)]))
    servers = plugin.transport.servers
    assert [str(sp) for sp, _ in servers] == ["203.0.113.20:3478 (udp)", "203.0.113.21:3478 (udp)"]
    assert servers[0][1]().username == "me"


def test_server_announce_table_needs_a_secret():
    from shoal_transport_turn.plugin import AnnouncedTurn

    AnnouncedTurn(url="turn:203.0.113.20:3478", secret="s")
    for bad in ({"url": "turn:203.0.113.20"}, {"url": "stun:x", "secret": "s"},
                {"url": "turn:x", "secret": "s", "secret_file": "/f"}):
        with pytest.raises(ValueError):
            AnnouncedTurn(**bad)
    assert "'s'" not in repr(AnnouncedTurn(url="turn:x", secret="s"))
