"""The ice plugin installs, registers under shoal.plugins and validates its table."""

import pytest

from shoal.config import NodeConfig, plugin_settings
from shoal.errors import ConfigError
from shoal.plugins import list_plugins, load_plugins


def cfg(table: str) -> NodeConfig:
    import tomllib

    data = tomllib.loads(f'name = "n"\nstate_dir = "/tmp/n"\nplugins = ["ice"]\n'
                        f'[interface]\naddress = "100.64.0.1/10"\n[plugin.ice]\n{table}\n')
    return NodeConfig.model_validate(data)


def test_registered():
    assert "ice" in {i.name for i in list_plugins()}
    pm = load_plugins(["ice"])
    assert pm.has_plugin("ice")


def test_settings_validated():
    pm = load_plugins(["ice"])
    assert plugin_settings(cfg('birthday_ports = 64'), pm)["ice"] is not None
    with pytest.raises(ConfigError, match=r"plugin\.ice\."):
        plugin_settings(cfg('birthday_ports = -1'), pm)
    with pytest.raises(ConfigError, match="unknown key"):
        plugin_settings(cfg("bogus = 1"), pm)
