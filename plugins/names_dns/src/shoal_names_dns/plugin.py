"""Entry point ``dns``: every node answers DNS for ``<node>.<network>.shoal``.

Wiring only (STYLE habit 6): on node up the plugin binds a UDP responder at
``[plugin.dns] listen`` (default: the node's own overlay IPv4 address, port
53, rebound when the server assigns another address), registers the
``shoal`` domain with systemd-resolved where it runs, and reports the
responder's address as ``node.dns`` in ``shoal status --json`` (with its
counters under ``dns``). The zone (``zone.build``) is computed from the
node's current members at each query, so membership changes and renames
show at once; answers come from ``answer.answer``. A peer asking learns only
about the networks it shares with this node (``visible_to``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator
from shoal.config import parse_endpoint
from shoal.hookspecs import hookimpl
from shoal.plugin_api import STATIC_NETWORK, NodeHandle, NodePlugin

from shoal_names_dns import resolved
from shoal_names_dns.answer import Counters, answer, refuse
from shoal_names_dns.zone import Member, build

log = logging.getLogger(__name__)

WATCH_FAST, WATCH_SLOW = 0.25, 1.0


class DnsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    listen: str | None = None        # "ADDRESS:PORT"; default: the overlay IPv4 address, 53
    register_resolved: bool = True   # tell systemd-resolved (when it runs) about ~shoal

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str | None) -> str | None:
        if v is not None:
            parse_endpoint(v)
        return v


def _server_peers(node: NodeHandle) -> list[tuple[Any, list[str]]]:
    """The peers the server gave this node, with the networks they share."""
    out = []
    for key, p in list(node.peers.items()):
        nets = [n for n in node.networks_of(key) if n != STATIC_NETWORK]
        if nets:
            out.append((p, nets))
    return out


def members_of(node: NodeHandle) -> list[Member]:
    """This node and the peers the server gave it, once per network they share."""
    out: list[Member] = []
    vip = node.virtual_ip
    if vip:
        me = node.keypair.public_b64
        out += [Member(node.config.name, n, vip, me) for n in node.networks()]
    for p, nets in _server_peers(node):
        out += [Member(p.name, net, p.virtual_ip, p.public_key_b64) for net in nets]
    return out


def visible_to(node: NodeHandle, members: list[Member], source: str) -> list[Member] | None:
    """The members a query from ``source`` may learn about; None: refuse it.

    This host (its own overlay address, loopback) sees every network of the node;
    a peer sees only the networks it shares with this node, so a member of one
    network learns nothing about the members of another; anyone else is refused.
    """
    if source == node.virtual_ip or ipaddress.ip_address(source).is_loopback:
        return members
    for p, nets in _server_peers(node):
        if p.virtual_ip == source:
            shared = set(nets)
            return [m for m in members if m.network in shared]
    return None


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, rt: DnsRuntime) -> None:
        self.rt = rt
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        node = self.rt.node
        try:
            members = visible_to(node, members_of(node), addr[0])
        except ValueError:
            members = None
        if members is None:
            self.rt.counters.refused += 1
            reply = refuse(data)
        else:
            reply = answer(data, build(members), self.rt.counters)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


class DnsRuntime(NodePlugin):
    """The responder of one running node."""

    def __init__(self, node: NodeHandle) -> None:
        self.node = node
        self.settings = node.settings(DnsSettings)
        self.counters = Counters()
        self.bound: tuple[str, int] | None = None
        self.resolved_error: str | None = None
        self.resolved_registered = False
        self._transport: asyncio.DatagramTransport | None = None
        self._task: asyncio.Task[None] | None = None
        self._bind_error: str | None = None

    def wanted(self) -> tuple[str, int] | None:
        if self.settings.listen:
            return parse_endpoint(self.settings.listen)
        vip = self.node.virtual_ip
        return (vip, 53) if vip else None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch())

    def stop(self) -> None:
        # The interface goes away with the node: systemd-resolved drops its settings itself.
        if self._task is not None:
            self._task.cancel()
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self.bound = None

    async def _watch(self) -> None:
        while True:
            want = self.wanted()
            if want is not None and want != self.bound:
                await self._bind(want)
            await asyncio.sleep(WATCH_SLOW if self.bound else WATCH_FAST)

    async def _bind(self, addr: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self),
                                                               local_addr=addr)
        except OSError as e:
            err = f"dns: cannot listen on {addr[0]}:{addr[1]}: {e.strerror or e}"
            if err != self._bind_error:   # the address may not be on the interface yet
                log.debug("%s (will retry)", err)
                self._bind_error = err
            return
        if self._transport is not None:
            self._transport.close()
        self._transport, self.bound, self._bind_error = transport, addr, None  # type: ignore
        log.info("dns: answering for .shoal names on %s:%d", *addr)
        await self._register(addr)

    async def _register(self, addr: tuple[str, int]) -> None:
        ifname = self.node.interface_name
        if not self.settings.register_resolved or ifname is None \
                or not resolved.resolved_running():
            return
        self.resolved_error = await resolved.register(ifname, addr[0], addr[1])
        self.resolved_registered = self.resolved_error is None
        if self.resolved_error:
            log.warning("dns: systemd-resolved: %s", self.resolved_error)
        else:
            log.info("dns: systemd-resolved sends *.shoal queries to %s:%d", *addr)

    def figures(self) -> dict[str, Any]:
        c = self.counters
        return {"listen": f"{self.bound[0]}:{self.bound[1]}" if self.bound else None,
                "answered": c.answered, "nxdomain": c.nxdomain, "refused": c.refused,
                "malformed": c.malformed, "resolved": self.resolved_registered,
                "resolved_error": self.resolved_error,
                "names": len(build(members_of(self.node)))}

    def status(self, status: dict[str, Any]) -> None:
        st = self.figures()
        status["node"]["dns"] = st["listen"]
        status["dns"] = st


@hookimpl
def shoal_config_register_settings(register):  # type: ignore[no-untyped-def]
    register("dns", DnsSettings)


@hookimpl
def shoal_node_plugin(node: NodeHandle) -> DnsRuntime:
    return DnsRuntime(node)
