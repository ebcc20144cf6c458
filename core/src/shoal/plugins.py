"""Plugin loading: stevedore discovers, pluggy dispatches.

Config decides which plugins load and in what order (``plugins = [...]``); the
core's own behaviour is registered the same way, from the same entry-point
group, before the configured plugins. A plugin that is named but not installed,
or that fails to import, stops start-up with a message naming it and the
package to install (STYLE habit 7). Nothing here runs at import time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy
from stevedore import NamedExtensionManager

from shoal import hookspecs
from shoal.errors import PluginError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "shoal.plugins"

#: Built-in behaviour, always loaded first, through the same path as plugins.
BUILTIN_PLUGINS = ("core-identity",)

#: Distributions of the plugins the Shoal project ships (for error messages).
KNOWN_DISTRIBUTIONS = {
    "udp": "shoal-transport-udp",
    "relay": "shoal-transport-relay",
    "wss": "shoal-transport-wss",
    "ice": "shoal-traversal-ice",
    "broadcast": "shoal-frames-broadcast",
    "ipx": "shoal-frames-ipx",
    "dns": "shoal-names-dns",
}


@dataclass(frozen=True)
class PluginInfo:
    name: str
    distribution: str
    version: str
    module: str
    enabled: bool
    builtin: bool


def install_hint(name: str) -> str:
    dist = KNOWN_DISTRIBUTIONS.get(name)
    if dist:
        return f"pip install {dist}"
    return f"install the package that provides entry point {name!r} in group {ENTRY_POINT_GROUP!r}"


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _distribution_of(ep: metadata.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return ("?", "?")
    return (dist.metadata["Name"], dist.version)


def new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def load_plugins(names: list[str] | tuple[str, ...], *, extra: list[tuple[str, Any]] | None = None
                 ) -> pluggy.PluginManager:
    """Build a plugin manager with the built-ins plus ``names`` (in that order).

    ``extra`` registers in-process plugin objects (tests, embedding) after the
    configured ones.
    """
    wanted = list(BUILTIN_PLUGINS) + [n for n in names if n not in BUILTIN_PLUGINS]
    seen: set[str] = set()
    for n in wanted:
        if n in seen:
            raise PluginError(f"plugin {n!r} is listed twice in 'plugins'")
        seen.add(n)

    available = _entry_points()
    missing = [n for n in wanted if n not in available]
    if missing:
        n = missing[0]
        raise PluginError(f"plugin {n!r} is not installed: {install_hint(n)}")

    failures: list[tuple[str, BaseException]] = []

    def on_failure(_manager: Any, ep: metadata.EntryPoint, err: BaseException) -> None:
        failures.append((ep.name, err))

    mgr = NamedExtensionManager(
        namespace=ENTRY_POINT_GROUP,
        names=wanted,
        name_order=True,
        invoke_on_load=False,
        on_load_failure_callback=on_failure,
    )
    if failures:
        n, err = failures[0]
        raise PluginError(
            f"plugin {n!r} failed to load ({type(err).__name__}: {err}); "
            f"reinstall it: {install_hint(n)}"
        )

    pm = new_plugin_manager()
    for ext in mgr.extensions:
        pm.register(ext.plugin, name=ext.name)
        log.debug("plugin %s registered from %s", ext.name, ext.entry_point.value)
    for name, obj in extra or []:
        pm.register(obj, name=name)
    pm.check_pending()
    return pm


def list_plugins(enabled_names: list[str] | None = None) -> list[PluginInfo]:
    """Every installed plugin, with its distribution, version and whether config enables it."""
    enabled = set(enabled_names or [])
    out = []
    for name, ep in sorted(_entry_points().items()):
        dist, version = _distribution_of(ep)
        builtin = name in BUILTIN_PLUGINS
        out.append(PluginInfo(name, dist, version, ep.value, builtin or name in enabled, builtin))
    return out
