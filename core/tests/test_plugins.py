"""Plugin loading through entry points, and hooks wired from throwaway plugins."""

from importlib import metadata

import pytest
from pydantic import BaseModel, ConfigDict

from shoal import plugins
from shoal.errors import PluginError
from shoal.hookspecs import hookimpl


def fake_entry_points(monkeypatch, extra, remove=()):
    """Make the installed entry points look like ``extra`` added and ``remove`` gone."""
    eps = {k: v for k, v in plugins._entry_points().items() if k not in remove}
    for name, value in extra.items():
        eps[name] = metadata.EntryPoint(name=name, value=value, group=plugins.ENTRY_POINT_GROUP)
    monkeypatch.setattr(plugins, "_entry_points", lambda: eps)
    # stevedore reads entry points itself: hand it the same view
    import stevedore.extension as ext

    monkeypatch.setattr(ext.ExtensionManager, "list_entry_points",
                        lambda self, verify_requirements=False: list(eps.values()))
    return eps


def test_builtin_and_configured_plugins_load_in_order():
    pm = plugins.load_plugins(["udp"])
    names = [n for n, _ in pm.list_name_plugin()]
    assert names[:2] == ["core-identity", "udp"]


def test_missing_plugin_is_an_error_naming_the_package(monkeypatch):
    fake_entry_points(monkeypatch, {}, remove=("relay",))
    with pytest.raises(PluginError, match=r"'relay' is not installed: pip install shoal-transport-relay"):
        plugins.load_plugins(["udp", "relay"])


def test_unknown_third_party_plugin_hint():
    with pytest.raises(PluginError, match="entry point 'frobnicate' in group 'shoal.plugins'"):
        plugins.load_plugins(["frobnicate"])


def test_duplicate_name_is_an_error():
    with pytest.raises(PluginError, match="listed twice"):
        plugins.load_plugins(["udp", "udp"])


def test_plugin_that_fails_to_import_is_an_error(monkeypatch):
    fake_entry_points(monkeypatch, {"broken": "shoal_no_such_module_xyz"})
    with pytest.raises(PluginError, match=r"plugin 'broken' failed to load \(ModuleNotFoundError"):
        plugins.load_plugins(["broken"])


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    colour: str = "blue"


class ThrowawayPlugin:
    @hookimpl
    def shoal_config_register_settings(self, register):
        register("throwaway", Settings)


def test_in_process_plugin_registers_settings(tmp_path):
    from shoal.config import NodeConfig, plugin_settings

    pm = plugins.load_plugins([], extra=[("throwaway", ThrowawayPlugin())])
    cfg = NodeConfig.model_validate({"name": "a", "state_dir": str(tmp_path), "plugins": [],
                                     "interface": {"address": "100.64.0.1/10"},
                                     "plugin": {"throwaway": {"colour": "red"}}})
    assert plugin_settings(cfg, pm)["throwaway"].colour == "red"


def test_list_plugins_marks_enabled():
    infos = {i.name: i for i in plugins.list_plugins(["udp"])}
    assert infos["udp"].enabled and infos["udp"].distribution == "shoal-transport-udp"
    assert infos["core-identity"].builtin
