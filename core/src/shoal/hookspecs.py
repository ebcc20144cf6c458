"""Every hook a Shoal plugin can implement, grouped by area.

Rules (ARCHITECTURE §2, STYLE habit 6):

* Hooks are synchronous and run at start-up or session set-up, never per packet.
  A plugin that takes part in the data path hands the core a plain object (a
  transport, a frame handler) once; the core calls that object directly.
* Registration hooks take a ``register`` callback: plugins add things, the core
  owns the list (the llm/datasette habit).
* Hook names are ``shoal_<area>_<verb>``.
* A node plugin's whole per-node life hangs off the object ``shoal_node_plugin``
  returns (``shoal.plugin_api``): transports, handlers, events, status.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy
from pydantic import BaseModel

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

    from shoal.identity import StaticKeypair
    from shoal.plugin_api import NodeHandle, NodePlugin
    from shoal.plugin_context import PluginContext

PROJECT = "shoal"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --------------------------------------------------------------------- config
@hookspec
def shoal_config_register_settings(register: Callable[[str, type[BaseModel]], None]) -> None:
    """Register the pydantic model that validates this plugin's ``[plugin.NAME]`` table.

    Call ``register(name, Model)``. Unknown keys should be forbidden by the model
    (``model_config = ConfigDict(extra="forbid")``) so typos are errors.
    """


# ------------------------------------------------------------------- identity
@hookspec(firstresult=True)
def shoal_identity_load_keypair(state_dir: Path, create: bool) -> StaticKeypair | None:
    """Return the node's static X25519 key pair, creating it when ``create`` is true.

    The first plugin that returns a key pair wins; the built-in file store keeps
    it in ``state_dir`` with mode 0600.
    """


# ----------------------------------------------------------------------- node
@hookspec
def shoal_node_plugin(node: NodeHandle) -> NodePlugin | None:
    """Return this plugin's per-node object (``shoal.plugin_api.NodePlugin``), or None.

    Called once per node start, for each enabled plugin in ``plugins = [...]``
    order, with a handle bound to this plugin. Everything the plugin does for the
    node (transports, data-path handlers, traversal, status) hangs off the
    returned object; keep per-node state there, never in module globals.
    """


# --------------------------------------------------------------------- server
@hookspec
def shoal_server_register_services(
    register: Callable[[str, Callable[..., Any]], None], context: PluginContext
) -> None:
    """Add services to the coordination server (e.g. a relay): ``register(name, start)``.

    ``start`` is an ``async`` callable run inside the server's event loop.
    ``context.server`` is a ``shoal.plugin_api.ServerHandle`` (relay grants,
    objects shared between server plugins).
    """


# -------------------------------------------------------------------- metrics
@hookspec
def shoal_metrics_register_collectors(
    register: Callable[[Collector], None], context: PluginContext
) -> None:
    """Add Prometheus collectors to the ``[metrics]`` endpoint of a node or a server.

    Called once when the endpoint starts (``context.server`` is set on a server;
    on a node it is None: node plugins read their own state). A collector (``prometheus_client.registry.Collector``) reads the plugin's
    own counters in ``collect()`` at scrape time; never update metrics per packet.
    Names start with ``shoal_<plugin>_``.
    """


# ------------------------------------------------------------------------ cli
@hookspec
def shoal_cli_register_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add subcommands to the ``shoal`` command line.

    Set ``func`` with ``parser.set_defaults(func=...)``; ``func(args)`` returns
    an exit code.
    """
