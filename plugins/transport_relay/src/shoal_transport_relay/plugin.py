"""Entry point ``relay``: settings for the relay client and server.

Not built yet: the relay service and client transport. Enabling the plugin
validates ``[plugin.relay]`` and says at start-up that no relay path exists.
"""

from __future__ import annotations

import logging

from pydantic import BaseModel, ConfigDict, field_validator

from shoal.config import parse_endpoint
from shoal.hookspecs import hookimpl
from shoal.plugin_context import PluginContext

log = logging.getLogger(__name__)

NOT_YET = "relay transport is not implemented yet: peers without a direct path stay unreachable"


class RelaySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    listen_udp: str | None = None  # server side: "203.0.113.10:3480"
    listen_tcp: str | None = None

    @field_validator("listen_udp", "listen_tcp")
    @classmethod
    def _ep(cls, v: str | None) -> str | None:
        if v is not None:
            parse_endpoint(v)
        return v


@hookimpl
def shoal_config_register_settings(register):  # type: ignore[no-untyped-def]
    register("relay", RelaySettings)


@hookimpl
def shoal_lifecycle_node_up(context: PluginContext) -> None:
    log.warning(NOT_YET)
