"""In-memory fakes of the I/O edges, so whole nodes run in one process in tests.

* ``FakeTun``: a datagram socketpair. The engine polls and reads/writes one end
  exactly as it would a TUN descriptor; the test plays the operating system on
  the other end (``inject`` a packet "sent by an application", ``delivered``
  to read what the node wrote to the interface).
* ``FakeNetwork`` / ``FakeTransport``: datagrams between in-process transports,
  delivered on the event loop, with optional drop/duplicate/tamper hooks.
* ``FakeNodeHandle``: the node as a plugin sees it (``shoal.plugin_api``), for
  unit tests of plugins and third-party transports without a node.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from shoal.errors import PluginError
from shoal.frames import FrameHandler
from shoal.identity import StaticKeypair
from shoal.path import Path
from shoal.plugin_api import Drop, NodeHandle, S
from shoal.transport import Endpoint, PathKind, Readiness, Receive, Transport


class FakeTun:
    """``vnet_hdr=True`` plays a TUN with offloads: every packet carries a virtio-net header."""

    def __init__(self, name: str = "fake0", mtu: int = 1420, vnet_hdr: bool = False) -> None:
        self.name = name
        self.mtu = mtu
        self.vnet_hdr = vnet_hdr
        self.offloads = ["csum", "tso4", "tso6", "uso4", "uso6"] if vnet_hdr else []
        self._node, self._os = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._node.setblocking(False)
        self._os.setblocking(False)

    def fileno(self) -> int:
        return self._node.fileno()

    def inject(self, packet: bytes) -> None:
        """An application on this host sends ``packet`` into the interface."""
        self._os.send(packet)

    def delivered(self) -> list[bytes]:
        """Packets the node wrote to the interface since the last call."""
        out = []
        while True:
            try:
                out.append(self._os.recv(65536))
            except BlockingIOError:
                return out

    def close(self) -> None:
        self._node.close()
        self._os.close()


Filter = Callable[[bytes, Endpoint, Endpoint], list[bytes]]


class FakeNetwork:
    """Connects FakeTransports by address. ``filter(data, src, dst)`` returns what to deliver."""

    def __init__(self) -> None:
        self.transports: dict[Endpoint, FakeTransport] = {}
        self.filter: Filter | None = None
        self.sent: list[tuple[bytes, Endpoint, Endpoint]] = []

    def transport(self, addr: Endpoint, name: str = "fake",
                  kind: PathKind = PathKind.DIRECT) -> FakeTransport:
        t = FakeTransport(self, addr, name, kind)
        self.transports[addr] = t
        return t

    def deliver(self, data: bytes, src: Endpoint, dst: Endpoint) -> None:
        self.sent.append((data, src, dst))
        out = [data] if self.filter is None else self.filter(data, src, dst)
        t = self.transports.get(dst)
        if t is None or t.loop is None or t.receive is None:
            return
        for d in out:
            t.loop.call_soon(t.receive, d, src)


class FakeTransport(Transport):
    """An in-memory transport on a ``FakeNetwork`` (``kind`` direct unless told).

    A relayed one addresses peers as ``("relay", <public key hex>)``: give it that
    address (``net.transport(("relay", key.hex()), kind=PathKind.RELAYED)``) and
    the network delivers to it like a relay would.
    """

    name = "fake"

    def __init__(self, net: FakeNetwork, addr: Endpoint, name: str = "fake",
                 kind: PathKind = PathKind.DIRECT) -> None:
        self.net = net
        self.addr = addr
        self.name = name
        self.kind = kind
        self.loop: asyncio.AbstractEventLoop | None = None
        self.receive: Receive | None = None
        self.closed = False

    async def start(self, loop: asyncio.AbstractEventLoop, receive: Receive) -> None:
        self.loop = loop
        self.receive = receive
        self.set_readiness(Readiness.READY, "started")

    def send(self, data: bytes, endpoint: Endpoint) -> None:
        if self.closed:
            raise OSError("closed")
        self.net.deliver(bytes(data), self.addr, endpoint)

    def local_endpoints(self) -> list[str]:
        return [f"{self.addr[0]}:{self.addr[1]}"]

    def candidates(self) -> list[str]:
        return self.local_endpoints()

    def endpoint_for(self, peer_key: bytes) -> Endpoint | None:
        return ("relay", peer_key.hex()) if self.kind is PathKind.RELAYED else None

    def close(self) -> None:
        self.closed = True
        self.net.transports.pop(self.addr, None)


def ipv4_packet(src: str, dst: str, payload: bytes = b"x" * 32, proto: int = 17) -> bytes:
    """A minimal IPv4 packet (no checksum) for routing tests."""
    import ipaddress

    total = 20 + len(payload)
    hdr = bytes([0x45, 0]) + total.to_bytes(2, "big") + b"\x00\x00\x00\x00" + bytes([64, proto]) \
        + b"\x00\x00" + ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
    return hdr + payload




class FakeNodeHandle(NodeHandle):
    """A ``NodeHandle`` for unit tests of a plugin, with no engine behind it.

    Records what the plugin does: ``datagram_handlers``, ``frame_handlers``,
    ``drops``, ``sent`` (peer, packet), ``offered`` / ``lost`` paths,
    ``announced`` candidates and ``signals``. ``peer_map`` and ``peer_networks``
    are plain dicts the test fills; ``deliver_signal`` plays a peer's signal.
    """

    def __init__(self, plugin: str = "test", config: Any = None,
                 settings: BaseModel | None = None, keypair: StaticKeypair | None = None,
                 main_transport: Transport | None = None, layer2: bool = False) -> None:
        self.plugin = plugin
        self._config = config
        self._settings = settings
        self._keypair = keypair or StaticKeypair.generate()
        self._main = main_transport
        self._layer2 = layer2
        self.now = 1000.0
        self.interface = "fake0"
        self.address: str | None = "100.64.0.1"
        self.is_online = True
        self.datagram_handlers: dict[int, Any] = {}
        self.frame_handlers: list[FrameHandler] = []
        self.drops: dict[str, int] = {}
        self.sent: list[tuple[Any, bytes]] = []
        self.received: list[tuple[bytes, Any, Transport]] = []
        self.peer_map: dict[bytes, Any] = {}
        self.peer_networks: dict[bytes, Sequence[str]] = {}
        self.own_networks: list[str] = []
        self.offered: list[tuple[bytes, Path, float | None, str]] = []
        self.lost: list[tuple[bytes, Path, str]] = []
        self.announced: list[tuple[list[str], Any]] = []
        self.signals: list[tuple[bytes, str, str]] = []
        self.signal_handlers: dict[str, Any] = {}

    @property
    def config(self) -> Any:
        return self._config

    @property
    def keypair(self) -> StaticKeypair:
        return self._keypair

    def settings(self, model: type[S]) -> S:
        s = self._settings
        return s if isinstance(s, model) else model()

    @property
    def interface_name(self) -> str | None:
        return self.interface

    @property
    def virtual_ip(self) -> str | None:
        return self.address

    @property
    def layer2(self) -> bool:
        return self._layer2

    def clock(self) -> float:
        return self.now

    def host_addresses(self) -> list[str]:
        return ["127.0.0.1"]

    def register_datagram_handler(self, type_byte: int, handler: Any) -> None:
        if type_byte in self.datagram_handlers:
            raise PluginError(f"datagram type 0x{type_byte:02x} registered twice")
        self.datagram_handlers[type_byte] = handler

    def register_frame_handler(self, handler: FrameHandler) -> None:
        self.frame_handlers.append(handler)

    def count_drop(self, reason: Drop) -> None:
        self.drops[reason.value] = self.drops.get(reason.value, 0) + 1

    def send_to_peer(self, peer: Any, packet: bytes) -> bool:
        self.sent.append((peer, packet))
        return True

    def receiver(self, transport: Transport) -> Receive:
        def receive(data: bytes, endpoint: Any) -> None:
            h = self.datagram_handlers.get(data[0]) if data else None
            if h is not None:
                h(data, endpoint, transport)
            else:
                self.received.append((data, endpoint, transport))
        return receive

    @property
    def peers(self) -> Mapping[bytes, Any]:
        return self.peer_map

    def networks_of(self, peer_key: bytes) -> Sequence[str]:
        return self.peer_networks.get(peer_key, ())

    def networks(self) -> list[str]:
        return list(self.own_networks)

    @property
    def main_transport(self) -> Transport:
        if self._main is None:
            raise PluginError("FakeNodeHandle has no main transport")
        return self._main

    def offer_path(self, peer_key: bytes, path: Path, rtt: float | None, reason: str) -> None:
        self.offered.append((peer_key, path, rtt, reason))

    def path_lost(self, peer_key: bytes, path: Path, reason: str) -> None:
        self.lost.append((peer_key, path, reason))

    @property
    def online(self) -> bool:
        return self.is_online

    def announce(self, endpoints: list[str], nat: Any) -> None:
        self.announced.append((endpoints, nat))

    def signal(self, peer_key: bytes, kind: str, data: str) -> None:
        self.signals.append((peer_key, kind, data))

    def register_signal_handler(self, kind: str, handler: Any) -> None:
        if kind in self.signal_handlers:
            raise PluginError(f"signal kind {kind!r} registered twice")
        self.signal_handlers[kind] = handler

    def deliver_signal(self, peer_key: bytes, kind: str, data: str) -> None:
        self.signal_handlers[kind](peer_key, data)


class FakeServerHandle:
    """A ``ServerHandle`` for unit tests of server-side plugin hooks."""

    def __init__(self) -> None:
        self.relay_granters: list[Callable[..., Any]] = []
        self.relay_revokers: list[Callable[[str], None]] = []
        self.relay_grant_lifetime = 600
        self.objects: dict[str, object] = {}

    def add_relay_granter(self, granter: Callable[..., Any]) -> None:
        self.relay_granters.append(granter)

    def add_relay_revoker(self, revoker: Callable[[str], None]) -> None:
        self.relay_revokers.append(revoker)

    def set_relay_grant_lifetime(self, seconds: int) -> None:
        self.relay_grant_lifetime = seconds

    def publish(self, name: str, obj: object) -> None:
        self.objects[name] = obj

    def published(self, name: str) -> object | None:
        return self.objects.get(name)
