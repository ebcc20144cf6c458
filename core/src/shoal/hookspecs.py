"""Every hook a Shoal plugin can implement, grouped by area.

Rules (ARCHITECTURE §2, STYLE habit 6):

* Hooks are synchronous and run at start-up or session set-up, never per packet.
  A plugin that takes part in the data path hands the core a plain object (a
  transport, a frame handler) once; the core calls that object directly.
* Registration hooks take a ``register`` callback: plugins add things, the core
  owns the list (the llm/datasette habit).
* Hook names are ``shoal_<area>_<verb>``.
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

    from shoal.frames import FrameHandler
    from shoal.identity import StaticKeypair
    from shoal.plugin_context import PluginContext
    from shoal.transport import Transport

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


# ------------------------------------------------------------------ discovery
@hookspec
def shoal_discovery_register_probes(
    register: Callable[[str, Callable[..., Any]], None], context: PluginContext
) -> None:
    """Register NAT-discovery probes (RFC 5780 style) run after login.

    ``register(name, probe)``; a probe is an ``async`` callable returning a dict
    of findings that the node merges into ``status.node.nat``.
    """


# ------------------------------------------------------------------ traversal
@hookspec
def shoal_traversal_create(context: PluginContext) -> Any | None:
    """Return a traversal agent (candidate gathering, connectivity checks) or None."""


# ------------------------------------------------------------------ transport
@hookspec
def shoal_transport_create(context: PluginContext) -> Transport | None:
    """Return a transport this plugin provides (UDP socket, relay client, ...), or None.

    Called once at node start. The transport's ``send`` is called on the data
    path, so it must be a cheap, non-blocking call.
    """


# --------------------------------------------------------------------- frames
@hookspec
def shoal_frames_register_handlers(
    register: Callable[[FrameHandler], None], context: PluginContext
) -> None:
    """Register frame handlers for frames unicast routing does not cover.

    Broadcast, multicast and non-IP frames read from the interface are offered
    to the registered handlers in registration order.
    """


# ------------------------------------------------------------------ lifecycle
@hookspec
def shoal_lifecycle_node_up(context: PluginContext) -> None:
    """The node is up: interface configured, transports bound."""


@hookspec
def shoal_lifecycle_node_down(context: PluginContext) -> None:
    """The node is shutting down; release what the plugin holds."""


@hookspec
def shoal_lifecycle_peer_up(context: PluginContext, peer_name: str, public_key: str) -> None:
    """A tunnel to a peer has completed its handshake."""


@hookspec
def shoal_lifecycle_peer_down(context: PluginContext, peer_name: str, public_key: str) -> None:
    """A tunnel to a peer was torn down or timed out."""


@hookspec
def shoal_status_extend(status: dict[str, Any], context: PluginContext) -> None:
    """Add this plugin's figures to ``shoal status --json`` (e.g. ``status["ipx"] = {...}``).

    Extend only: never change or remove keys the contract defines.
    """


# --------------------------------------------------------------------- server
@hookspec
def shoal_server_register_services(
    register: Callable[[str, Callable[..., Any]], None], context: PluginContext
) -> None:
    """Add services to the coordination server (e.g. a relay): ``register(name, start)``.

    ``start`` is an ``async`` callable run inside the server's event loop.
    """


# -------------------------------------------------------------------- metrics
@hookspec
def shoal_metrics_register_collectors(
    register: Callable[[Collector], None], context: PluginContext
) -> None:
    """Add Prometheus collectors to the ``[metrics]`` endpoint of a node or a server.

    Called once when the endpoint starts (``context.node`` or ``context.server`` is
    set). A collector (``prometheus_client.registry.Collector``) reads the plugin's
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
