"""Entry point ``broadcast``: broadcast/multicast settings.

Not built yet: flooding broadcast and multicast to the network's peers.
Enabling the plugin validates ``[plugin.broadcast]`` and says so at start-up;
broadcast packets are dropped and counted as ``no_route``.
"""

from __future__ import annotations

import logging

from pydantic import BaseModel, ConfigDict, Field

from shoal.hookspecs import hookimpl
from shoal.plugin_context import PluginContext

log = logging.getLogger(__name__)

NOT_YET = "broadcast flooding is not implemented yet: broadcast/multicast packets are dropped"


class BroadcastSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rate_limit_pps: int = Field(200, ge=1, le=100000)  # per-node flood limit


@hookimpl
def shoal_config_register_settings(register):  # type: ignore[no-untyped-def]
    register("broadcast", BroadcastSettings)


@hookimpl
def shoal_lifecycle_node_up(context: PluginContext) -> None:
    log.warning(NOT_YET)
