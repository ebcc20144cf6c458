"""What a plugin gets from a running node, and what it hands back (contract ``CONTRACT_VERSION``).

The seam between core and plugins, declared like a wire format:

* The core calls the hook ``shoal_node_plugin(node)`` once per enabled plugin,
  in ``plugins = [...]`` order, with a ``NodeHandle`` bound to that plugin. The
  plugin returns a ``NodePlugin`` (or None): the per-node object that holds all
  of its state for that node (no module globals), offers its transports, and
  receives the node's events.
* A plugin touches the node only through its ``NodeHandle``: registering data-
  path handlers (a datagram type byte taken twice is an error naming both
  plugins), counting drops, looking peers up, reporting paths, announcing
  candidates and signalling peers through the coordination server. The core
  never looks at a plugin object beyond the methods declared below.

Order of events for one node::

    shoal_node_plugin(handle)        every plugin, config order
    NodePlugin.transports()          every plugin; each transport .start()ed
    NodePlugin.start()               every plugin (register handlers here)
    on_login / on_peer / on_peer_up / on_peer_down / on_peer_gone   as they happen
    NodePlugin.stop()                reverse order; then transports .close()d

Events are called on the node's event loop; they must not block.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import BaseModel

from shoal.frames import FrameHandler
from shoal.path import Path
from shoal.transport import Endpoint, Receive, Transport

if TYPE_CHECKING:
    from shoal.config import NodeConfig
    from shoal.control.client import Dialer
    from shoal.control import messages as m
    from shoal.identity import StaticKeypair

#: handler(data, endpoint, transport): a datagram whose first byte was registered.
DatagramHandler = Callable[[bytes, Endpoint, Transport], None]
#: handler(peer_key, data): a signal from a peer, relayed by the coordination server.
SignalHandler = Callable[[bytes, str], None]

S = TypeVar("S", bound=BaseModel)

#: Type bytes the core uses itself (handshake initiation, response, cookie reply, data,
#: path probes; see wire.py and path_probe.py).
CORE_DATAGRAM_TYPES = frozenset({1, 2, 3, 4, 6})
#: What ``NodeHandle.networks_of`` says for a ``[[peers]]`` entry of the config.
STATIC_NETWORK = "static"


class Drop(Enum):
    """Drop counters a plugin may increment (``status --json`` node.drops)."""

    MALFORMED = "malformed"
    AUTH = "auth"
    REPLAY = "replay"
    SEND_FAILED = "send_failed"


class PeerView(Protocol):
    """Read-only view of a peer. Do not keep it across ``on_peer_gone``."""

    @property
    def name(self) -> str: ...
    @property
    def public_key(self) -> bytes: ...
    @property
    def public_key_b64(self) -> str: ...
    @property
    def virtual_ip(self) -> str: ...
    @property
    def vip_packed(self) -> bytes: ...
    @property
    def path(self) -> Path | None: ...
    @property
    def tunnel_up(self) -> bool: ...
    @property
    def rtt_ms(self) -> float | None: ...


class NodeHandle(ABC):
    """The node as one plugin sees it. Implemented by the core (and by
    ``shoal.testing.fakes.FakeNodeHandle`` for unit tests)."""

    #: the entry-point name of the plugin this handle belongs to
    plugin: str

    # ------------------------------------------------------------ identity and config
    @property
    @abstractmethod
    def config(self) -> NodeConfig: ...

    @property
    @abstractmethod
    def keypair(self) -> StaticKeypair: ...

    @abstractmethod
    def settings(self, model: type[S]) -> S:
        """This plugin's validated ``[plugin.NAME]`` table (defaults when absent)."""

    @property
    @abstractmethod
    def interface_name(self) -> str | None:
        """The overlay interface (TUN/TAP) name, once created."""

    @property
    @abstractmethod
    def virtual_ip(self) -> str | None: ...

    @property
    @abstractmethod
    def layer2(self) -> bool:
        """True in TAP mode (Ethernet frames), False in TUN mode (IP packets)."""

    @abstractmethod
    def clock(self) -> float:
        """Monotonic seconds, the engine's clock (tests inject it)."""

    @abstractmethod
    def host_addresses(self) -> list[str]:
        """This machine's IPv4 addresses (not loopback, not the overlay)."""

    # ------------------------------------------------------------ data path
    @abstractmethod
    def register_datagram_handler(self, type_byte: int, handler: DatagramHandler) -> None:
        """Datagrams (on any transport) whose first byte is ``type_byte`` go to ``handler``.

        Raises ``PluginError`` naming both plugins when the byte is taken.
        """

    @abstractmethod
    def register_frame_handler(self, handler: FrameHandler) -> None:
        """Interface packets unicast routing misses (broadcast, multicast, non-IP)."""

    @abstractmethod
    def count_drop(self, reason: Drop) -> None: ...

    @abstractmethod
    def send_to_peer(self, peer: PeerView, packet: bytes) -> bool:
        """Seal one interface packet and send it on the peer's path (slow path)."""

    @abstractmethod
    def receiver(self, transport: Transport) -> Receive:
        """The ``receive`` for a transport the plugin runs itself (e.g. punch sockets)."""

    # ------------------------------------------------------------ peers
    @property
    @abstractmethod
    def peers(self) -> Mapping[bytes, PeerView]:
        """Live view: public key -> peer."""

    @abstractmethod
    def networks_of(self, peer_key: bytes) -> Sequence[str]:
        """Networks this node shares with the peer (``(STATIC_NETWORK,)`` for ``[[peers]]``)."""

    @abstractmethod
    def networks(self) -> list[str]:
        """Networks this node is an active member of (as the server last said)."""

    # ------------------------------------------------------------ paths
    @property
    @abstractmethod
    def main_transport(self) -> Transport:
        """The node's main direct transport (its UDP socket)."""

    @abstractmethod
    def offer_path(self, peer_key: bytes, path: Path, rtt: float | None, reason: str) -> None:
        """This path to the peer works (a check was answered, ``rtt`` seconds).

        The core's path choice decides whether the peer moves to it.
        """

    @abstractmethod
    def path_lost(self, peer_key: bytes, path: Path, reason: str) -> None:
        """This path to the peer stopped working; the core moves the peer off it."""

    # ------------------------------------------------------------ control plane
    @property
    @abstractmethod
    def online(self) -> bool:
        """Logged in to the coordination server."""

    @abstractmethod
    def announce(self, endpoints: list[str], nat: m.NatInfo) -> None:
        """Tell the server the main transport's candidates and the NAT's behaviour.

        The core adds the candidates of the other direct transports.
        """

    @abstractmethod
    def signal(self, peer_key: bytes, kind: str, data: str) -> None:
        """Send a short message (≤ 1024 characters) to a peer through the server.

        Dropped while offline or when the server does not let the two nodes see
        each other. ``kind`` names the receiving handler (use your plugin name).
        """

    @abstractmethod
    def register_signal_handler(self, kind: str, handler: SignalHandler) -> None:
        """Signals of ``kind`` go to ``handler``; a kind taken twice is a ``PluginError``."""


class NodePlugin:
    """A plugin's per-node object. Subclass and override what you need."""

    def transports(self) -> Sequence[Transport]:
        """Transports this plugin offers; the core starts, uses and closes them."""
        return ()

    def start(self) -> None:
        """The node is up: engine running, transports started. Register handlers here."""

    def stop(self) -> None:
        """The node is shutting down: cancel tasks, close what you opened."""

    def status(self, status: dict[str, Any]) -> None:
        """Add figures to ``status --json`` (extend only, never change contract keys)."""

    def collectors(self) -> Sequence[Any]:
        """Prometheus collectors (``prometheus_client.registry.Collector``) for the node's
        ``[metrics]`` endpoint; they read this plugin's counters at scrape time."""
        return ()

    async def netcheck(self) -> dict[str, Any] | None:
        """Fresh NAT findings for ``shoal netcheck`` (a traversal plugin), or None."""
        return None

    def control_dialer(self) -> Dialer | None:
        """How to open the TCP connection to the coordination server, or None (direct).

        For networks where only a proxy leads out (the ``wss`` plugin's HTTP
        CONNECT proxy). The first plugin in ``plugins`` order that returns one is
        used; the Noise channel inside stays end-to-end. Added in contract 1.1.
        """
        return None

    def on_login(self, welcome: m.Welcome) -> None:
        """Logged in (again) to the coordination server."""

    def on_grants(self, grants: m.Grants) -> None:
        """Fresh relay grants (they replace those of the welcome): pushed before the old
        ones expire and when the node's networks change. Added in contract 1.3."""

    def on_peer(self, peer: PeerView, info: m.PeerInfo) -> None:
        """The server announced (or updated) a peer this node should tunnel to."""

    def on_peer_gone(self, peer_key: bytes) -> None:
        """The peer went offline or left the shared networks."""

    def on_peer_up(self, peer: PeerView) -> None:
        """A tunnel to the peer completed its handshake."""

    def on_peer_down(self, peer: PeerView) -> None:
        """The tunnel to the peer was torn down."""


class ServerHandle(Protocol):
    """What server-side plugins (``shoal_server_register_services``) get as ``context.server``."""

    def add_relay_granter(self, granter: Callable[..., m.RelayGrant]) -> None:
        """``granter(node_key_b64, networks)`` issues a grant for one relay, sent in each
        Welcome and in ``grants`` refreshes; ``networks`` are the node's active networks
        (contract 1.3; a granter taking only the key is called with the key alone)."""

    def add_relay_revoker(self, revoker: Callable[[str], None]) -> None:
        """``revoker(node_key_b64)``: the node logged out or lost a network; end its
        registration at a relay in this process at once. Added in contract 1.3."""

    def set_relay_grant_lifetime(self, seconds: int) -> None:
        """How long grants live; the server pushes fresh ones at half-life (contract 1.3)."""

    def publish(self, name: str, obj: object) -> None:
        """Share an object with other server plugins (e.g. ``"relay"``: the relay service)."""

    def published(self, name: str) -> object | None: ...


__all__ = [
    "CORE_DATAGRAM_TYPES", "STATIC_NETWORK", "DatagramHandler", "Drop", "NodeHandle",
    "NodePlugin", "PeerView", "ServerHandle", "SignalHandler",
]
