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
