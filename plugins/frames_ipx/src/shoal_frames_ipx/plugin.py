"""Entry point ``ipx``: IPX and DOSBox IPXNET bridge settings.

Not built yet: carrying IPX frames and serving the IPXNET protocol. Enabling
the plugin validates ``[plugin.ipx]`` and says so at start-up.
"""

from __future__ import annotations

import logging

from pydantic import BaseModel, ConfigDict, field_validator

from shoal.config import parse_endpoint
from shoal.hookspecs import hookimpl
from shoal.plugin_context import PluginContext

log = logging.getLogger(__name__)

NOT_YET = "ipx is not implemented yet: no IPXNET bridge is listening"


class IpxSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ipxnet_listen: str | None = None  # "127.0.0.1:213" -> DOSBox: ipxnet connect 127.0.0.1 213

    @field_validator("ipxnet_listen")
    @classmethod
    def _ep(cls, v: str | None) -> str | None:
        if v is not None:
            parse_endpoint(v)
        return v


@hookimpl
def shoal_config_register_settings(register):  # type: ignore[no-untyped-def]
    register("ipx", IpxSettings)


@hookimpl
def shoal_lifecycle_node_up(context: PluginContext) -> None:
    log.warning(NOT_YET)
