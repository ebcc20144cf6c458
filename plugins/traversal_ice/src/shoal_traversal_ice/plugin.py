"""Entry point ``ice``: NAT discovery, ICE-style checks, birthday punching.

``shoal_node_plugin`` hands the node an ``Agent`` (see agent.py); the node
feeds it logins and peers, and the agent offers the direct paths it finds.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator
from shoal.hookspecs import hookimpl
from shoal.plugin_api import NodeHandle

from shoal_traversal_ice.agent import Agent


class IceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    birthday_ports: int = Field(256, ge=0, le=1024)      # extra sockets on a symmetric NAT
    birthday_probes: int = Field(2048, ge=0, le=8192)    # probes against a symmetric peer
    # RFC 5780 STUN servers ("host:port") used beside the coordination server's endpoints
    stun: list[str] = Field(default_factory=list, max_length=8)
    use_server_stun: bool = True    # false: classify with the ``stun`` servers only

    @field_validator("stun")
    @classmethod
    def _servers(cls, v: list[str]) -> list[str]:
        for e in v:
            host, sep, port = e.rpartition(":")
            if not sep or not host.strip("[]") or not port.isdigit() \
                    or not 0 < int(port) < 65536:
                raise ValueError(f"{e!r}: expected HOST:PORT, e.g. \"203.0.113.20:3478\"")
        return v


@hookimpl
def shoal_config_register_settings(register):  # type: ignore[no-untyped-def]
    register("ice", IceSettings)


@hookimpl
def shoal_node_plugin(node: NodeHandle) -> Agent:
    return Agent(node, node.settings(IceSettings))
