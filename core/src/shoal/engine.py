"""The data plane: interface <-> sessions <-> transport.

This is the hot path (ARCHITECTURE §4): the two readers below drain their file
descriptor in a loop each time it becomes readable, and per packet do only a
dict lookup, one AEAD call and one syscall. No hook call, no task, no log call
per packet; counters are plain attribute increments. Everything slow (hand-
shakes, timers, status) happens outside the loops.

Lock rules: none; everything runs on the node's one event loop thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from cryptography.exceptions import InvalidTag

from shoal import handshake, wire
from shoal.frames import FrameHandler
from shoal.handshake import HandshakeError
from shoal.identity import StaticKeypair
from shoal.peer import IndexTable, Peer, Timers
from shoal.transport import Endpoint, Transport

log = logging.getLogger(__name__)

TUN_BATCH = 512
TICK_INTERVAL = 0.25
ZERO4 = b"\x00\x00\x00\x00"


@dataclass
class DropCounters:
    """Packets dropped, by reason (shown in ``status --json`` under node.drops)."""

    malformed: int = 0        # unknown type, truncated, bad header
    auth: int = 0             # AEAD tag did not verify
    replay: int = 0           # counter already seen or too old
    unknown_index: int = 0    # no session with that receiver index
    handshake: int = 0        # handshake message rejected
    spoofed_source: int = 0   # decrypted packet not from the peer's own address
    no_route: int = 0         # interface packet for an address no peer owns
    send_failed: int = 0      # transport buffer full or unreachable


class Engine:
    def __init__(self, local: StaticKeypair, tun_fd: int, transport: Transport,
                 ciphers: tuple[int, ...] = (wire.CIPHER_CHACHA20_POLY1305,),
                 timers: Timers | None = None, clock: Callable[[], float] = time.monotonic,
                 eager: bool = True) -> None:
        self.local = local
        self.tun_fd = tun_fd
        self.transport = transport
        self.ciphers = ciphers
        self.timers = timers or Timers()
        self.clock = clock
        self.eager = eager
        self.table = IndexTable()
        self.peers: dict[bytes, Peer] = {}        # public key -> peer
        self.routes: dict[bytes, Peer] = {}       # packed virtual IPv4 -> peer
        self.drops = DropCounters()
        self.frame_handlers: list[FrameHandler] = []
        self.on_peer_up: Callable[[Peer], None] = lambda p: None
        self._last_ts = 0
        self._tick_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------ peers
    def add_peer(self, name: str, public_key: bytes, virtual_ip: str,
                 endpoint: Endpoint | None, candidates: list[Endpoint] | None = None) -> Peer:
        """Add a peer, or update the name, address and candidates of a known one."""
        if public_key == self.local.public:
            raise ValueError(f"peer {name!r} has this node's own public key")
        p = self.peers.get(public_key)
        if p is None:
            p = Peer(name, public_key, virtual_ip, endpoint, self.table, self.timers)
            self.peers[public_key] = p
        else:
            p.name = name
            if p.virtual_ip != virtual_ip:
                self.routes.pop(p.vip_packed, None)
                p.set_virtual_ip(virtual_ip)
            if p.endpoint is None or p.current is None:
                p.endpoint = endpoint
        p.candidates = list(candidates or ([] if endpoint is None else [endpoint]))
        self.routes[p.vip_packed] = p
        return p

    def remove_peer(self, public_key: bytes) -> None:
        p = self.peers.pop(public_key, None)
        if p is not None:
            p.expire_all()
            if self.routes.get(p.vip_packed) is p:
                del self.routes[p.vip_packed]

    def _timestamp(self) -> int:
        ts = max(time.time_ns(), self._last_ts + 1)
        self._last_ts = ts
        return ts

    # ------------------------------------------------------------ lifecycle
    async def start(self, autotick: bool = True) -> None:
        """Bind the transport and start reading; ``autotick=False`` leaves timers to the caller."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        await self.transport.start(loop, self.on_datagram)
        loop.add_reader(self.tun_fd, self.on_tun_readable)
        if autotick:
            self._tick_task = loop.create_task(self._tick_loop())

    def stop(self) -> None:
        if self._loop is not None:
            try:
                self._loop.remove_reader(self.tun_fd)
            except (ValueError, OSError):
                pass
        if self._tick_task is not None:
            self._tick_task.cancel()
        self.transport.close()

    async def _tick_loop(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:  # a timer bug must not stop the node
                log.exception("timer tick failed")
            await asyncio.sleep(TICK_INTERVAL)

    def tick(self) -> None:
        now = self.clock()
        send = self.transport.send
        for p in list(self.peers.values()):
            for pkt in p.tick(now, self.local, self._timestamp(), self.ciphers, self.eager):
                if pkt[:4] == wire.INIT_PREFIX:
                    self._send_initiation(p, pkt)
                else:
                    self._send(send, pkt, p.endpoint)

    def _send_initiation(self, peer: Peer, pkt: bytes) -> None:
        """Without a working session, try every known candidate address at once.

        Whichever answers wins (roaming moves the endpoint to it); duplicates
        that arrive by several paths are refused by the initiation timestamp.
        """
        targets = [peer.endpoint]
        if peer.current is None:
            targets += [c for c in peer.candidates if c != peer.endpoint]
        for ep in targets:
            if ep is not None:
                self._send(self.transport.send, pkt, ep)

    def _send(self, send: Callable[[bytes, Endpoint], None], pkt: bytes, ep: Endpoint) -> None:
        try:
            send(pkt, ep)
        except OSError:
            self.drops.send_failed += 1

    # ------------------------------------------------------------ hot path: interface -> peer
    def on_tun_readable(self) -> None:
        read = os.read
        fd = self.tun_fd
        routes = self.routes
        send = self.transport.send
        for _ in range(TUN_BATCH):
            try:
                pkt = read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                return
            if len(pkt) < 20:
                self.drops.malformed += 1
                continue
            if pkt[0] >> 4 == 4:
                peer = routes.get(pkt[16:20])
            else:
                peer = None
            if peer is None:
                self._unrouted(pkt)
                continue
            s = peer.current
            if s is None:
                self._stage(peer, pkt)
                continue
            c = s.send_counter
            s.send_counter = c + 1
            ctr = c.to_bytes(8, "little")
            header = s._header_prefix + ctr
            try:
                send(header + s.encrypt(ZERO4 + ctr, pkt, header), peer.endpoint)
            except OSError:
                self.drops.send_failed += 1
                continue
            st = peer.stats
            st.tx_packets += 1
            st.tx_bytes += len(pkt)

    def _unrouted(self, pkt: bytes) -> None:
        for h in self.frame_handlers:
            if h(pkt):
                return
        self.drops.no_route += 1

    def _stage(self, peer: Peer, pkt: bytes) -> None:
        peer.staged.append(pkt)
        if peer.initiator is None and peer.endpoint is not None:
            hs = peer.begin_handshake(self.local, self.clock(), self._timestamp(), self.ciphers)
            if hs is not None:
                self._send_initiation(peer, hs)

    def send_to_peer(self, peer: Peer, pkt: bytes) -> bool:
        """Slow-path send of one interface packet (frame handlers, flushes)."""
        s = peer.current
        if s is None or peer.endpoint is None:
            self._stage(peer, pkt)
            return False
        self._send(self.transport.send, s.seal(pkt), peer.endpoint)
        peer.stats.tx_packets += 1
        peer.stats.tx_bytes += len(pkt)
        return True

    # ------------------------------------------------------------ hot path: transport -> interface
    def on_datagram(self, data: bytes, addr: Endpoint) -> None:
        if data[:4] == wire.DATA_PREFIX and len(data) >= 32:
            s = self.table.sessions.get(int.from_bytes(data[4:8], "little"))
            if s is None:
                self.drops.unknown_index += 1
                return
            mv = memoryview(data)
            try:
                pt = s.decrypt(ZERO4 + data[8:16], mv[16:], mv[:16])
            except InvalidTag:
                self.drops.auth += 1
                return
            if not s.replay.check(int.from_bytes(data[8:16], "little")):
                self.drops.replay += 1
                return
            peer = s.peer
            peer.last_rx = s
            if not s.confirmed:
                self._confirm(peer)
            if addr != peer.endpoint:
                self._roam(peer, addr)
            st = peer.stats
            st.rx_packets += 1
            if not pt:
                return  # keepalive
            if pt[12:16] != peer.vip_packed or pt[0] >> 4 != 4:
                self.drops.spoofed_source += 1
                return
            st.rx_bytes += len(pt)
            try:
                os.write(self.tun_fd, pt)
            except OSError:
                pass
            return
        self._control_datagram(data, addr)

    # ------------------------------------------------------------ slow path
    def _roam(self, peer: Peer, addr: Endpoint) -> None:
        log.info("peer %s: endpoint %s -> %s", peer.name, peer.endpoint, addr)
        peer.endpoint = addr

    def _confirm(self, peer: Peer) -> None:
        peer.confirm_next()
        self._established(peer)

    def _established(self, peer: Peer) -> None:
        for pkt in peer.take_staged():
            self.send_to_peer(peer, pkt)
        self.on_peer_up(peer)

    def _control_datagram(self, data: bytes, addr: Endpoint) -> None:
        head = data[:4]
        try:
            if head == wire.INIT_PREFIX:
                self._on_initiation(wire.decode_init(data), addr)
            elif head == wire.RESP_PREFIX:
                self._on_response(wire.decode_resp(data), addr)
            else:
                self.drops.malformed += 1
        except wire.MalformedPacket:
            self.drops.malformed += 1
        except HandshakeError as e:
            self.drops.handshake += 1
            log.debug("handshake from %s rejected: %s", addr, e)

    def _on_initiation(self, msg: wire.HandshakeInit, addr: Endpoint) -> None:
        found: list[Peer] = []

        def accept(remote_static: bytes, ts: int) -> bool:
            p = self.peers.get(remote_static)
            if p is None or not p.accept_initiation(remote_static, ts):
                return False
            found.append(p)
            return True

        resp = handshake.respond(self.local, msg, self.table.allocate(), accept, self.ciphers)
        peer = found[0]
        now = self.clock()
        peer.on_initiation(resp.keys, resp.timestamp_ns, now)
        if addr != peer.endpoint:
            self._roam(peer, addr)
        self._send(self.transport.send, resp.packet, addr)
        log.debug("peer %s: answered handshake from %s", peer.name, addr)

    def _on_response(self, msg: wire.HandshakeResp, addr: Endpoint) -> None:
        peer = self.table.pending.get(msg.receiver)
        if peer is None:
            raise HandshakeError("response to no pending handshake")
        s = peer.on_response(msg, self.clock())
        if addr != peer.endpoint:
            self._roam(peer, addr)
        log.info("peer %s: tunnel up (%s, rtt %.1f ms)", peer.name,
                 wire.CIPHER_NAMES[s.cipher], peer.rtt_ms or 0.0)
        staged = peer.take_staged()
        if staged:
            for pkt in staged:
                self.send_to_peer(peer, pkt)
        else:  # confirm the session to the responder right away
            self._send(self.transport.send, s.seal(b""), peer.endpoint)
        self.on_peer_up(peer)

    def drop_counts(self) -> dict[str, int]:
        return asdict(self.drops)
