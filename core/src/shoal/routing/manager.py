"""A node's gateway routes: follows the server's network summaries and the peer set.

On every member: approved routes of other gateways are checked against the
member's own LANs and each other (``rules.decide``), installed as kernel
routes through the Shoal interface, and handed to the engine (destination
prefix -> gateway peer; the gateway peer's source check admits the prefix).
On the gateway: approved routes it announced are served (``forwarding``):
IPv4 forwarding on, nftables rules admitting only the members of the
approving network, masquerade where asked.

The engine's tables are updated at once (synchronously); kernel and nftables
changes run in one background task that always converges on the latest
wanted state. Everything is undone on ``close``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable, Sequence
from typing import Any

from shoal.control import messages as m
from shoal.identity import decode_public_key
from shoal.routing import forwarding
from shoal.routing.rules import Decision, PrefixTable, Route, SourceCheck, decide

log = logging.getLogger(__name__)


class RouteManager:
    def __init__(self, engine: Any, ifname: Callable[[], str | None], own_key: str,
                 networks: Callable[[], Sequence[m.NetworkSummary]],
                 peer_infos: Callable[[], dict[bytes, m.PeerInfo]]) -> None:
        self.engine = engine
        self.ifname = ifname
        self.own_key = own_key
        self.networks = networks
        self.peer_infos = peer_infos
        self.local_lans: list[ipaddress.IPv4Network] = []
        self.decisions: list[Decision] = []
        self.served: list[forwarding.Served] = []
        self.installed: set[ipaddress.IPv4Network] = set()
        self.errors: list[str] = []
        self._applied_served: list[forwarding.Served] | None = None
        self._forward_before: bool | None = None
        self._refused_logged: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._dirty = False
        self._closed = False

    # ------------------------------------------------------------ wanted state
    def _approved(self) -> list[tuple[m.NetworkSummary, m.RouteInfo]]:
        return [(n, r) for n in self.networks() if n.role != "pending"
                for r in n.routes if r.approved]

    def refresh(self) -> None:
        """Recompute from the current summaries and peers (cheap; call on every change)."""
        if self._closed:
            return
        approved = self._approved()
        routes = [Route(n.name, ipaddress.IPv4Network(r.prefix), r.gateway)
                  for n, r in approved]
        if self.engine.l2:
            self.decisions = [Decision(r, False, f"route {r.prefix} (network {r.network}): "
                                                 "gateway routes need interface mode tun")
                              for r in routes if r.gateway != self.own_key]
        else:
            self.decisions = decide(routes, self.own_key, self.local_lans)
        for d in self.decisions:
            if not d.accepted and d.reason not in self._refused_logged:
                self._refused_logged.add(d.reason)
                log.warning("%s", d.reason)
        eng = self.engine
        by_gw: dict[bytes, list[ipaddress.IPv4Network]] = {}
        entries = []
        for d in self.decisions:
            if d.accepted:
                key = decode_public_key(d.route.gateway)
                by_gw.setdefault(key, []).append(d.route.prefix)
                peer = eng.peers.get(key)
                if peer is not None:
                    entries.append((d.route.prefix, peer))
        for key, peer in eng.peers.items():
            want = by_gw.get(key, [])
            peer.routed = SourceCheck(want) if want else SourceCheck()
        eng.prefix_routes = PrefixTable(entries)
        infos = self.peer_infos()
        self.served = [
            forwarding.Served(ipaddress.IPv4Network(r.prefix), n.name, r.masquerade,
                              tuple(sorted((i.virtual_ip for i in infos.values()
                                            if n.name in i.networks),
                                           key=ipaddress.IPv4Address)))
            for n, r in approved if r.gateway == self.own_key and not eng.l2]
        self._kick()

    # ------------------------------------------------------------ the OS side
    def _kick(self) -> None:
        if not (self.decisions or self.served or self.installed or self._applied_served):
            return   # no route anywhere: nothing for the OS (most nodes, most of the time)
        self._dirty = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._converge())

    async def _converge(self) -> None:
        while self._dirty and not self._closed:
            self._dirty = False
            try:
                await self._apply()
            except Exception:
                log.exception("applying gateway routes failed")

    async def _apply(self) -> None:
        ifname = self.ifname()
        if ifname is None:
            return
        lans = await forwarding.local_lans(ifname)
        if lans != self.local_lans:
            self.local_lans = lans
            self.refresh()   # a new LAN may refuse a route: recompute, then apply
            return
        errors: list[str] = []
        want = {d.route.prefix for d in self.decisions if d.accepted}
        for prefix in sorted(want - self.installed):
            err = await forwarding.route_replace(prefix, ifname)
            if err:
                errors.append(err)
            else:
                self.installed.add(prefix)
                log.info("route %s via the overlay installed", prefix)
        for prefix in sorted(self.installed - want):
            await forwarding.route_delete(prefix, ifname)
            self.installed.discard(prefix)
            log.info("route %s removed", prefix)
        served = list(self.served)
        if served != self._applied_served:
            if served:
                if self._forward_before is None:
                    self._forward_before = forwarding.set_ip_forward(True)
                err = await forwarding.apply_forwarding(ifname, served)
                if err:
                    errors.append(err)
                else:
                    log.info("gateway for %s", ", ".join(
                        f"{s.prefix} ({s.network}, {len(s.members)} members"
                        f"{', masquerade' if s.masquerade else ''})" for s in served))
            elif self._applied_served:
                await self._stop_serving(ifname)
            self._applied_served = served
        for e in errors:
            if e not in self.errors:
                log.error("%s", e)
        self.errors = errors

    async def _stop_serving(self, ifname: str) -> None:
        await forwarding.remove_forwarding(ifname)
        if self._forward_before is False:
            forwarding.set_ip_forward(False)
        self._forward_before = None

    async def close(self) -> None:
        """Undo what was applied (kernel routes go with the interface anyway)."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
        ifname = self.ifname()
        if ifname is not None:
            for prefix in self.installed:
                await forwarding.route_delete(prefix, ifname)
            if self._applied_served:
                await self._stop_serving(ifname)
        self.installed.clear()

    # ------------------------------------------------------------ status
    def status(self) -> list[dict[str, Any]]:
        """Every route of this node's networks, with its gateway and what this node did."""
        decided = {(d.route.network, str(d.route.prefix)): d for d in self.decisions}
        serving = {(s.network, str(s.prefix)) for s in self.served}
        out = []
        for n in self.networks():
            if n.role == "pending":
                continue
            for r in n.routes:
                d = decided.get((n.name, r.prefix))
                if r.gateway == self.own_key:
                    state = ("serving" if (n.name, r.prefix) in serving
                             and self._applied_served is not None else "approved") \
                        if r.approved else "awaiting-approval"
                elif not r.approved:
                    state = "awaiting-approval"
                elif d is not None and d.accepted:
                    state = "installed" if ipaddress.IPv4Network(r.prefix) in self.installed \
                        else "accepted"
                else:
                    state = "refused"
                gw_online = r.gateway == self.own_key or \
                    decode_public_key(r.gateway) in self.engine.peers
                row: dict[str, Any] = {"network": n.name, "prefix": r.prefix,
                                       "gateway": r.gateway_name, "gateway_key": r.gateway,
                                       "gateway_online": gw_online, "approved": r.approved,
                                       "masquerade": r.masquerade, "state": state}
                if state == "refused" and d is not None:
                    row["reason"] = d.reason
                out.append(row)
        return out
