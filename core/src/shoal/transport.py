"""The transport contract: what carries Shoal's sealed datagrams between nodes.

A transport is created by a plugin's per-node object (``NodePlugin.transports``,
see ``shoal.plugin_api``) and handed to the core once, at start-up. Everything a
transport may do and everything the core may ask of it is declared here; the
core never probes a transport for anything else.

Rules it obeys (contract version ``CONTRACT_VERSION``):

* ``send(data, endpoint)`` is called on the data path. It must not block and
  must not await: when the buffer is full or the transport is not usable it
  raises ``OSError`` (the engine counts ``send_failed``), as a UDP socket would.
* Each ``send`` carries one sealed Shoal datagram; the transport delivers it
  whole or not at all (``receive(data, endpoint)`` once per datagram). A
  stream transport (``Delivery.STREAM``) frames datagrams itself.
* ``kind`` says what a path over it is: ``PathKind.DIRECT`` reaches the peer's
  own address; ``PathKind.RELAYED`` goes through a third machine. Path choice
  prefers direct paths over relayed ones, then the order of ``plugins = [...]``,
  then measured quality (see ``shoal.path_choice``).
* Readiness: a transport starts ``STARTING`` (or ``READY`` when it can send at
  once) and reports every change with ``set_readiness``; the core moves peers
  off a transport that becomes ``LOST`` and offers it again when it is
  ``READY``. ``CLOSED`` is final.
* Endpoints are the transport's own hashable values (e.g. ``("198.51.100.2",
  41641)``). A transport may offer ``candidates()`` (strings the core
  announces to peers through the coordination server as ``"<plugin>=<text>"``;
  the peer's copy of the plugin reads them back with ``parse_endpoint`` and the
  core tries them as paths of the transport's kind). A relayed transport may
  instead address any peer by key with ``endpoint_for``.

Versioning: ``CONTRACT_VERSION`` is (major, minor). A minor bump only adds
(new optional methods with defaults); a major bump changes or removes. A plugin
calls ``require_contract((1, 0), "myplugin")`` to fail loudly on a core it does
not fit.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from enum import Enum
from typing import Any

from shoal.errors import PluginError

log = logging.getLogger(__name__)

#: (major, minor) of the transport and plugin contract (this module and shoal.plugin_api).
#: 1.1: NodePlugin.control_dialer; 1.2: Transport.send_many, bind_batches, offloads;
#: 1.3: NodePlugin.on_grants, ServerHandle relay granters given the node's networks,
#: add_relay_revoker, set_relay_grant_lifetime
CONTRACT_VERSION: tuple[int, int] = (1, 3)

Endpoint = Any  # a transport's own hashable address value, e.g. ("198.51.100.2", 41641)
Receive = Callable[[bytes, Endpoint], None]
#: receive_many(datagrams, endpoint): several datagrams of one sender, in order; items
#: may be memoryviews valid only during the call
ReceiveMany = Callable[[list[Any], Endpoint], None]


def require_contract(needed: tuple[int, int], plugin: str) -> None:
    """Raise a one-line ``PluginError`` unless this core offers contract ``needed``."""
    major, minor = CONTRACT_VERSION
    if needed[0] != major or needed[1] > minor:
        raise PluginError(
            f"plugin {plugin!r} needs Shoal transport contract {needed[0]}.{needed[1]}, "
            f"this core has {major}.{minor}: install a matching version of shoal or the plugin")


class PathKind(Enum):
    """What a path over a transport is. The values are the ``path`` words of ``status --json``."""

    DIRECT = "direct"      # to the peer's own address (possibly through NATs)
    RELAYED = "relay"      # through a third machine (relay, TURN, WebSocket relay)


class Delivery(Enum):
    """What the transport runs on underneath (informs MTU and loss behaviour)."""

    DATAGRAM = "datagram"  # UDP-like: may lose and reorder, no head-of-line blocking
    STREAM = "stream"      # TCP/TLS/WebSocket: reliable, ordered, framed by the transport


class Readiness(Enum):
    """Transitions: STARTING -> READY <-> LOST; any -> CLOSED (final)."""

    STARTING = "starting"  # not usable yet (e.g. waiting for a login or a connection)
    READY = "ready"        # send() works
    LOST = "lost"          # was usable, is not now; may become READY again by itself
    CLOSED = "closed"      # closed by the core; never usable again


ReadinessListener = Callable[["Transport", Readiness, Readiness, str], None]


class Transport(ABC):
    """Base class of every transport. Subclass it; override the abstract methods.

    Class attributes a subclass sets (or sets per instance in ``__init__``):

    ``name``       shown as ``transport`` in ``status --json`` (may change, e.g.
                   ``relay-udp`` / ``relay-tcp`` as a relay client switches).
    ``kind``       ``PathKind.DIRECT`` or ``PathKind.RELAYED``.
    ``delivery``   ``Delivery.DATAGRAM`` or ``Delivery.STREAM``.
    ``overhead``   bytes this transport adds below each Shoal datagram on the
                   wire (IP + UDP headers, relay framing...), for MTU planning.
    ``max_datagram`` largest Shoal datagram ``send`` accepts (bytes).
    """

    name: str = "transport"
    kind: PathKind = PathKind.DIRECT
    delivery: Delivery = Delivery.DATAGRAM
    overhead: int = 28
    max_datagram: int = 65507

    # ------------------------------------------------------------ what a transport implements
    @abstractmethod
    async def start(self, loop: asyncio.AbstractEventLoop, receive: Receive) -> None:
        """Bind and start delivering datagrams with ``receive(data, endpoint)``.

        Called once by the core, on the node's event loop. Raise ``ShoalError``
        with one readable sentence when the transport cannot start (e.g. a port
        in use), naming the config key that fixes it.
        """

    @abstractmethod
    def send(self, data: bytes, endpoint: Endpoint) -> None:
        """Send one datagram; never blocks; raises ``OSError`` when it cannot."""

    @abstractmethod
    def close(self) -> None:
        """Stop receiving and release sockets and tasks. Called once, at node shutdown."""

    def local_endpoints(self) -> list[str]:
        """Addresses this transport listens on (``host:port``), for status."""
        return []

    def candidates(self) -> list[str]:
        """Endpoints (text) peers may reach this node on, announced through the server.

        E.g. ``["192.0.2.1:5000"]``; the core announces them as ``"<plugin>=<text>"``
        (the main transport's own addresses are announced by the core and the
        traversal plugin) and the peer's copy of the same plugin reads them with
        ``parse_endpoint``. At most 16 candidates reach the server in all.
        """
        return []

    def parse_endpoint(self, text: str) -> Endpoint:
        """An endpoint from its text (a candidate, a static peer's ``endpoint``).

        Default: ``"host:port"`` -> ``(host, port)``. Raise ``ValueError`` when invalid.
        """
        from shoal.config import parse_endpoint

        return parse_endpoint(text)

    def endpoint_for(self, peer_key: bytes) -> Endpoint | None:
        """Relayed transports: how a peer is addressed through this transport (by its
        public key); None while that is not possible. Direct transports: None."""
        return None

    # ------------------------------------------------------------ batching (contract 1.2)
    def send_many(self, datagrams: list[bytes], endpoint: Endpoint) -> None:
        """Send several sealed datagrams to one endpoint, in order (a cut super-packet).

        The datagrams on the wire must be exactly those ``send`` would send, one
        sealed packet each. Default: ``send`` each. A transport that can batch
        (UDP GSO) overrides it. Raises ``OSError`` like ``send``.
        """
        send = self.send
        for d in datagrams:
            send(d, endpoint)

    def bind_batches(self, receive_many: ReceiveMany, burst_end: Callable[[], None]) -> bool:
        """Offered by the core before ``start``. A transport that accepts (returns True)
        may hand several datagrams of one sender over at once with ``receive_many``
        (e.g. one UDP GRO read), and then must call ``burst_end()`` (the core writes
        what it collected). Single datagrams still go to ``receive``. Default: False."""
        return False

    def offloads(self) -> list[str]:
        """Offloads active on this transport (e.g. ``udp_gso``, ``udp_gro``), for status."""
        return []

    def describe(self) -> dict[str, Any]:
        """Figures for ``status --json`` (``node.transports``) and ``shoal netcheck``."""
        return {}

    # ------------------------------------------------------------ readiness (provided)
    @property
    def readiness(self) -> Readiness:
        return self.__dict__.get("_readiness", Readiness.STARTING)

    def set_readiness(self, new: Readiness, reason: str) -> None:
        """Report a readiness change; the core is told through its listeners."""
        old = self.readiness
        if old is new or old is Readiness.CLOSED:
            return
        self.__dict__["_readiness"] = new
        log.debug("transport %s: %s -> %s (%s)", self.name, old.value, new.value, reason)
        for listener in list(self.__dict__.get("_listeners", ())):
            listener(self, old, new, reason)

    def watch(self, listener: ReadinessListener) -> None:
        """Called by the core: ``listener(transport, old, new, reason)`` on each change."""
        self.__dict__.setdefault("_listeners", []).append(listener)


def endpoint_text(ep: Endpoint | None) -> str | None:
    """How an endpoint is shown in status: ``host:port`` for address tuples."""
    if ep is None:
        return None
    if isinstance(ep, tuple) and len(ep) >= 2:
        return f"{ep[0]}:{ep[1]}"
    return str(ep)


__all__ = [
    "CONTRACT_VERSION", "Delivery", "Endpoint", "PathKind", "Readiness",
    "ReadinessListener", "Receive", "ReceiveMany", "Transport", "endpoint_text", "require_contract",
]
