"""Entry point ``ice``: NAT discovery, ICE-style checks, birthday punching.

``shoal_traversal_create`` hands the node an ``Agent`` (see agent.py); the
node feeds it logins and peers, and the agent moves peers between paths.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from shoal.hookspecs import hookimpl
from shoal.plugin_context import PluginContext

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
def shoal_traversal_create(context: PluginContext) -> Agent:
    settings = context.settings_for("ice")
    return Agent(settings)


@hookimpl
def shoal_status_extend(status: dict[str, Any], context: PluginContext) -> None:
    node = context.node
    agent = getattr(node, "traversal", None)
    if not isinstance(agent, Agent):
        return
    status["node"]["nat"] = agent.nat.as_dict()
    for p in status["peers"]:
        from shoal.identity import decode_public_key

        pt = agent.peers.get(decode_public_key(p["public_key"]))
        if pt is not None:
            sel = pt.checks.selected
            p["candidates"] = [{"address": f"{x.remote[0]}:{x.remote[1]}", "type": x.type.name.lower(),
                                "state": x.state.value,
                                "rtt_ms": None if x.rtt is None else round(x.rtt * 1000, 2)}
                               for x in pt.checks.pairs[:16]]
            if sel is not None and p.get("path") == "direct":
                p["rtt_ms"] = round((sel.rtt or 0) * 1000, 2)
            if pt.connected_at is not None:
                p["direct_since_s"] = round(agent.engine.clock() - pt.connected_at, 1)
