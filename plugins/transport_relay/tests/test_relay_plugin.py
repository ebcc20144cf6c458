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
