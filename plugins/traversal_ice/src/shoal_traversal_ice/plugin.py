"""Entry point ``ice``: NAT traversal settings.

Not built yet: NAT discovery, candidate gathering and connectivity checks.
Enabling the plugin validates ``[plugin.ice]`` and says so at start-up; peers
are reached only at their configured endpoints.
"""

from __future__ import annotations

import logging

from pydantic import BaseModel, ConfigDict, Field

from shoal.hookspecs import hookimpl
from shoal.plugin_context import PluginContext

log = logging.getLogger(__name__)

NOT_YET = "ice traversal is not implemented yet: no hole punching, NAT type stays 'unknown'"


class IceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    check_interval_ms: int = Field(50, ge=5, le=1000)   # pacing of connectivity checks
    birthday_ports: int = Field(256, ge=0, le=1024)     # probe budget against symmetric NATs


@hookimpl
def shoal_config_register_settings(register):  # type: ignore[no-untyped-def]
    register("ice", IceSettings)


@hookimpl
def shoal_lifecycle_node_up(context: PluginContext) -> None:
    log.warning(NOT_YET)
