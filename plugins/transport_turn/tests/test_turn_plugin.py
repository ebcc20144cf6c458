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
