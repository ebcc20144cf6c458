"""The node's local API (``shoal status``, ``ping``, ``netcheck``, ``network``): dispatch.

Commands arrive over the Unix socket (``api.py``) as ``(cmd, args)``; each
answer is JSON-ready. User mistakes raise ``ShoalError`` with one sentence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shoal.control import messages as m
from shoal.errors import ShoalError
from shoal.node_status import path_word, render_status
from shoal.peer import Peer
from shoal.transport import PathKind, Readiness, endpoint_text

if TYPE_CHECKING:
    from shoal.node import Node


class NodeApi:
    def __init__(self, node: Node) -> None:
        self.node = node

    async def handle(self, cmd: str, args: dict[str, Any]) -> Any:
        if cmd == "status":
            return render_status(self.node)
        if cmd == "netcheck":
            return await self.netcheck()
        if cmd == "ping":
            try:
                count, interval = int(args.get("count", 4)), float(args.get("interval", 1.0))
            except (TypeError, ValueError):
                raise ShoalError("ping: count must be a whole number and interval a number of "
                                 "seconds") from None
            return await self.ping(str(args.get("peer", "")), count, interval)
        if cmd == "network":
            if self.node.control is None:
                raise ShoalError("this node has no [server]: networks need a coordination server")
            op = args.get("op")
            if op not in m.ARGS:
                raise ShoalError(f"unknown network operation {op!r}")
            return await self.node.control.request(op, args.get("args") or {})
        raise ShoalError(f"unknown command {cmd!r}")

    def find_peer(self, who: str) -> Peer:
        """A peer by name, overlay address or public key."""
        assert self.node.engine is not None
        hits = [p for p in self.node.engine.peers.values()
                if who in (p.name, p.virtual_ip, p.public_key_b64)]
        if not hits:
            raise ShoalError(f"no peer called {who!r} (see 'shoal status')")
        if len(hits) > 1:
            raise ShoalError(f"several peers are called {who!r}; use the address or key")
        return hits[0]

    async def ping(self, who: str, count: int, interval: float) -> dict[str, Any]:
        from shoal.overlay_ping import ping

        if not 1 <= count <= 1000 or not 0.01 <= interval <= 60:
            raise ShoalError("ping: count must be 1..1000 and interval 0.01..60 s")
        peer = self.find_peer(who)
        if self.node.virtual_ip is None:
            raise ShoalError("this node has no overlay address yet")
        rtts = await ping(self.node.virtual_ip, peer.virtual_ip, count, interval, timeout=2.0)
        return {"peer": peer.name, "virtual_ip": peer.virtual_ip, "rtt_ms": rtts,
                "path": path_word(peer) if peer.current else "none",
                "transport": None if peer.via is None else peer.via.name,
                "endpoint": endpoint_text(peer.endpoint)}

    async def netcheck(self) -> dict[str, Any]:
        """NAT behaviour (fresh discovery when an agent is present) and relay reachability."""
        out: dict[str, Any] = {"nat": None, "relay": None,
                               "server": self.node.control.server if self.node.control else None,
                               "online": bool(self.node.control and self.node.control.state.online)}
        for slot in self.node.slots:
            nat = await slot.plugin.netcheck()
            if nat is not None:
                out["nat"] = nat
                break
        relays = [{"transport": t.name, "ready": t.readiness is Readiness.READY, **t.describe()}
                  for t in self.node.transports if t.kind is PathKind.RELAYED]
        out["relay"] = relays[0] if relays else None
        out["relays"] = relays          # every relayed transport (relay, wss, turn, ...)
        return out
