"""Entry point ``broadcast``: broadcast and multicast across every network a node shares.

Wiring only (STYLE habit 6): at start-up the plugin hands the engine one frame
handler (``Flooder.handler``); on node up it steers the operating system's
broadcast and multicast into the interface (``os_routes``) and keeps that in
step with the address the server assigns; ``shoal status --json`` gains a
``broadcast`` section with its counters.

Which peers share a network comes from the node (``NodeHandle.networks_of``:
what the coordination server says; static ``[[peers]]`` form one network named
``static``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from shoal.hookspecs import hookimpl
from shoal.plugin_api import NodeHandle, NodePlugin

from shoal_frames_broadcast.classify import directed_broadcast
from shoal_frames_broadcast.fanout import Flooder
from shoal_frames_broadcast.os_routes import iface_ipv4, route_commands, run_commands
from shoal_frames_broadcast.token_bucket import TokenBucket

log = logging.getLogger(__name__)

WATCH_FAST, WATCH_SLOW = 0.25, 2.0


class BroadcastSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rate_limit_pps: int = Field(200, ge=1, le=100000)  # per-node flood limit (packets/s)
    burst: int | None = Field(None, ge=1, le=100000)    # bucket size; default: rate_limit_pps
    configure_routes: bool = True  # route 224.0.0.0/4 and 255.255.255.255 into the interface


class BroadcastPlugin(NodePlugin):
    """What the plugin holds for one running node."""

    def __init__(self, node: NodeHandle) -> None:
        self.node = node
        self.settings = node.settings(BroadcastSettings)
        self.flooder: Flooder | None = None
        self.applied: tuple[str, int] | None = None
        self.route_errors: list[str] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        node, settings = self.node, self.settings
        burst = settings.burst or settings.rate_limit_pps
        self.flooder = Flooder(node.peers, node.send_to_peer, node.networks_of,
                               TokenBucket(settings.rate_limit_pps, burst, time.monotonic()),
                               time.monotonic, node.layer2)
        node.register_frame_handler(self.flooder.handler)
        self._task = asyncio.get_running_loop().create_task(self._watch())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    # ------------------------------------------------------------ address and routes
    async def _watch(self) -> None:
        """Follow the interface address: directed broadcast and routes track it."""
        name = self.node.interface_name
        if not name or self.flooder is None:
            return
        while True:
            cur = iface_ipv4(name)
            if cur is not None and cur != self.applied:
                self.applied = cur
                self.flooder.directed = directed_broadcast(*cur)
                if self.settings.configure_routes:
                    await self._configure(name, cur)
            await asyncio.sleep(WATCH_SLOW if self.applied else WATCH_FAST)

    async def _configure(self, iface: str, addr: tuple[str, int]) -> None:
        errors = await run_commands(route_commands(iface, *addr))
        self.route_errors = errors
        for e in errors:
            log.warning("broadcast: could not set up a route: %s", e)
        if not errors:
            log.info("broadcast: %s carries 224.0.0.0/4, 255.255.255.255 and %s/%d's broadcast",
                     iface, addr[0], addr[1])

    # ------------------------------------------------------------ status
    def status(self, status: dict[str, Any]) -> None:
        if self.flooder is None:
            return
        s = self.settings
        out = self.flooder.counters.as_dict()
        out.update({
            "rate_limit_pps": s.rate_limit_pps,
            "burst": s.burst or s.rate_limit_pps,
            "directed_broadcast": ".".join(str(b) for b in self.flooder.directed) or None,
            "routes": {"configured": self.applied is not None and not self.route_errors
                       and s.configure_routes, "errors": list(self.route_errors)},
        })
        status["broadcast"] = out


@hookimpl
def shoal_config_register_settings(register):  # type: ignore[no-untyped-def]
    register("broadcast", BroadcastSettings)


@hookimpl
def shoal_node_plugin(node: NodeHandle) -> BroadcastPlugin:
    return BroadcastPlugin(node)
