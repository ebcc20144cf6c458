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
