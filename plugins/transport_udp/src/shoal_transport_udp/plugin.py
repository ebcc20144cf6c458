"""Entry point ``udp``: the node's one UDP socket as a Shoal transport.

Listed first among direct transports it is the node's main transport: the one
handshakes go out on, traversal probes it and its port is announced to peers.

Offloads (Linux): at start the socket is probed for UDP_SEGMENT (send a run
of equal-size datagrams with one ``sendmsg``) and UDP_GRO (receive several
datagrams of one sender in one read); ``offloads`` lists what works. A GSO
send the kernel refuses at run time (EIO: a device without checksum
offload on the path) turns GSO off and the datagrams go one by one.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field, field_validator
from shoal.errors import ShoalError
from shoal.hookspecs import hookimpl
from shoal.offload import udp_gso
from shoal.plugin_api import NodeHandle, NodePlugin
from shoal.transport import Delivery, Endpoint, PathKind, Readiness, Receive, ReceiveMany, Transport

log = logging.getLogger(__name__)

RECV_BATCH = 512


def _nothing() -> None:
    pass


_GRO_CMSG_SPACE = socket.CMSG_SPACE(4)


def probe_offloads(sock: socket.socket) -> tuple[bool, bool]:
    """(UDP_SEGMENT, UDP_GRO) support of this kernel for ``sock``; enables GRO if present."""
    try:
        sock.getsockopt(udp_gso.SOL_UDP, udp_gso.UDP_SEGMENT)
        gso = True
    except OSError:
        gso = False
    try:
        sock.setsockopt(udp_gso.SOL_UDP, udp_gso.UDP_GRO, 1)
        gro = True
    except OSError:
        gro = False
    return gso, gro


class UdpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    port: int = Field(41641, ge=0, le=65535)
    listen: str = "0.0.0.0"
    socket_buffer: int = Field(4 << 20, ge=65536, le=256 << 20)
    #: UDP GSO/GRO where the kernel has them
    offload: bool = True

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        if ipaddress.ip_address(v).version != 4:
            raise ValueError("must be an IPv4 address (IPv6 sockets are not supported yet)")
        return v


class UdpTransport(Transport):
    """Non-blocking UDP socket drained in batches from the event loop."""

    name = "udp"
    kind = PathKind.DIRECT
    delivery = Delivery.DATAGRAM
    overhead = 28  # IPv4 + UDP headers

    def __init__(self, settings: UdpSettings,
                 host_addresses: Callable[[], list[str]] = list) -> None:
        self.settings = settings
        self.host_addresses = host_addresses
        self.sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._receive: Receive | None = None
        self.gso = False
        self.gro = False
        self._rbuf = bytearray(65536)
        self._receive_many: ReceiveMany | None = None
        self._burst_end: Callable[[], None] = _nothing

    def bind_batches(self, receive_many: ReceiveMany, burst_end: Callable[[], None]) -> bool:
        """Deliver each multi-datagram GRO read as one batch, then call ``burst_end``."""
        self._receive_many = receive_many
        self._burst_end = burst_end
        return True

    def offloads(self) -> list[str]:
        return [n for n, on in (("udp_gso", self.gso), ("udp_gro", self.gro)) if on]

    async def start(self, loop: asyncio.AbstractEventLoop, receive: Receive) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for opt, force in ((socket.SO_RCVBUF, 33), (socket.SO_SNDBUF, 32)):
            try:  # SO_RCVBUFFORCE / SO_SNDBUFFORCE lift the sysctl cap when root
                s.setsockopt(socket.SOL_SOCKET, force, self.settings.socket_buffer)
            except OSError:
                s.setsockopt(socket.SOL_SOCKET, opt, self.settings.socket_buffer)
        try:
            s.bind((self.settings.listen, self.settings.port))
        except OSError as e:
            s.close()
            raise ShoalError(
                f"cannot bind UDP {self.settings.listen}:{self.settings.port}: {e.strerror}; "
                "set [plugin.udp] port to a free port (0 = any)") from None
        s.setblocking(False)
        self.sock = s
        self._receive = receive
        self._loop = loop
        if self.settings.offload:
            self.gso, self.gro = probe_offloads(s)
        # The data path calls the socket's own method: no wrapper per packet.
        self.send = s.sendto  # type: ignore[method-assign]
        loop.add_reader(s.fileno(), self._drain_gro if self.gro else self._drain)
        log.info("udp transport listening on %s:%d", *s.getsockname())
        self.set_readiness(Readiness.READY, "socket bound")

    def send(self, data: bytes, endpoint: Endpoint) -> None:
        raise OSError("udp transport not started")

    def _drain(self) -> None:
        sock = self.sock
        if sock is None:
            return
        recv = sock.recvfrom
        receive = self._receive
        assert receive is not None
        for _ in range(RECV_BATCH):
            try:
                data, addr = recv(65535)
            except BlockingIOError:
                return
            except OSError:  # e.g. ICMP errors reported on the socket
                continue
            receive(data, addr)

    def _drain_gro(self) -> None:
        """As ``_drain``, for reads that may hold several datagrams (UDP_GRO)."""
        sock = self.sock
        if sock is None:
            return
        recv = sock.recvmsg_into
        buf = self._rbuf
        mv = memoryview(buf)
        bufs = [buf]
        space = _GRO_CMSG_SPACE
        receive = self._receive
        many = self._receive_many
        burst_end = self._burst_end
        assert receive is not None
        for _ in range(RECV_BATCH):
            try:
                n, anc, _flags, addr = recv(bufs, space)
            except BlockingIOError:
                return
            except OSError:
                continue
            size = udp_gso.gro_segment_size(anc) if anc else 0
            if not size or size >= n:
                receive(bytes(mv[:n]), addr)
            elif many is not None:  # handled before the next read reuses the buffer
                many(udp_gso.split_gro(mv[:n], size), addr)
                burst_end()
            else:
                for off in range(0, n, size):
                    receive(bytes(mv[off:min(off + size, n)]), addr)

    def send_many(self, datagrams: list[bytes], endpoint: Endpoint) -> None:
        """Send datagrams to one endpoint, runs of equal size as one GSO send each."""
        sock = self.sock
        if sock is None:
            raise OSError("udp transport not started")
        if not self.gso:
            for d in datagrams:
                sock.sendto(d, endpoint)
            return
        for group, size in udp_gso.batches(datagrams):
            if not size:
                sock.sendto(group[0], endpoint)
                continue
            try:
                sock.sendmsg(group, udp_gso.segment_cmsg(size), 0, endpoint)
            except OSError as e:
                if e.errno != errno.EIO:
                    raise
                log.warning("udp: the kernel refused a GSO send (%s); sending one by one", e)
                self.gso = False
                for d in group:
                    sock.sendto(d, endpoint)

    def local_endpoints(self) -> list[str]:
        if self.sock is None:
            return []
        host, port = self.sock.getsockname()[:2]
        return [f"{host}:{port}"]

    def candidates(self) -> list[str]:
        """This machine's addresses with the bound port (used when udp is not the main
        transport; as the main one, the node and traversal announce it themselves)."""
        if self.sock is None:
            return []
        port = self.sock.getsockname()[1]
        host = self.settings.listen
        hosts = self.host_addresses() if host == "0.0.0.0" else [host]
        return [f"{h}:{port}" for h in hosts]

    def close(self) -> None:
        if self.sock is not None:
            if self._loop is not None:
                try:
                    self._loop.remove_reader(self.sock.fileno())
                except (ValueError, OSError):
                    pass
            self.sock.close()
            self.sock = None


class UdpPlugin(NodePlugin):
    def __init__(self, node: NodeHandle) -> None:
        self.transport = UdpTransport(node.settings(UdpSettings), node.host_addresses)

    def transports(self) -> list[Transport]:
        return [self.transport]


@hookimpl
def shoal_config_register_settings(register):  # type: ignore[no-untyped-def]
    register("udp", UdpSettings)


@hookimpl
def shoal_node_plugin(node: NodeHandle) -> UdpPlugin:
    return UdpPlugin(node)
