"""Entry point ``template``: settings, and the per-node object that offers the transport.

Everything goes through the public contract (``shoal.transport``,
``shoal.plugin_api``); nothing here touches the node's internals.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from shoal.hookspecs import hookimpl
from shoal.plugin_api import NodeHandle, NodePlugin
from shoal.transport import Transport, require_contract

from shoal_transport_template.transport import TemplateTransport

#: The contract version this plugin is written against (see shoal.transport).
CONTRACT = (1, 0)


class TemplateSettings(BaseModel):
    """``[plugin.template]``: unknown keys are errors, so typos are caught."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    port: int = Field(41700, ge=0, le=65535)   # 0 = any free port
    listen: str = "0.0.0.0"

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        if ipaddress.ip_address(v).version != 4:
            raise ValueError("must be an IPv4 address")
        return v


class TemplatePlugin(NodePlugin):
    """All this plugin holds for one node (no module globals)."""

    def __init__(self, node: NodeHandle) -> None:
        s = node.settings(TemplateSettings)
        self.transport = TemplateTransport(s.listen, s.port, node.host_addresses)

    def transports(self) -> list[Transport]:
        return [self.transport]

    def status(self, status: dict[str, Any]) -> None:
        status["template"] = {"listen": self.transport.local_endpoints()}


@hookimpl
def shoal_config_register_settings(register):  # type: ignore[no-untyped-def]
    register("template", TemplateSettings)


@hookimpl
def shoal_node_plugin(node: NodeHandle) -> TemplatePlugin:
    require_contract(CONTRACT, "template")
    return TemplatePlugin(node)
