"""The data plane: interface <-> sessions <-> transports.

This is the hot path (ARCHITECTURE §4): the readers below drain their file
descriptor in a loop each time it becomes readable, and per packet do only a
dict lookup, one AEAD call and one syscall. No hook call, no task, no log call
per packet; counters are plain attribute increments. Everything slow (hand-
shakes, timers, status, path choice) happens outside the loops.

Paths: a peer is sent to with ``peer.send(packet, peer.endpoint)``, copies of
the peer's one ``Path`` (transport, endpoint, kind; see path.py) kept for the
hot loop. The path changes only through ``Peer.set_path``. An authenticated
packet arriving by another path moves the peer there (roaming), unless
``path_policy`` says to stay (e.g. keep a working direct path rather than
follow a late packet from the relay).

Modes: ``tun`` routes IPv4/IPv6 packets by destination address; ``tap``
routes Ethernet frames by destination MAC. In both, a packet from a peer must
carry that peer's own source address (IP or MAC), or it is dropped.

Handshakes never run on the data path: an initiation is checked cheaply
first (mac1, then under load a cookie/mac2, then a per-source token bucket;
see cookie.py), queued in a bounded backlog and answered a few at a time
from a separate loop callback, so the Diffie-Hellman work of a burst of
initiations interleaves with data packets instead of holding them up. A
backlog that fills past a quarter puts the node "under load", which makes
initiators prove their source address with a cookie.

Lock rules: none; everything runs on the node's one event loop thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.exceptions import InvalidTag

from shoal import handshake, wire
from shoal.cookie import CookieChecker, Verdict
from shoal.engine_offload import BatchedInterface
from shoal.offload import checksum
from shoal.frames import FrameHandler
from shoal.handshake import HandshakeError
from shoal.identity import StaticKeypair
from shoal.path import Path
from shoal.peer import IndexTable, Peer, Timers
from shoal.routing.rules import PrefixTable
from shoal.transport import Endpoint, Transport

log = logging.getLogger(__name__)

TUN_BATCH = 512
#: initiations waiting for their Diffie-Hellman work; more are dropped
HANDSHAKE_BACKLOG = 256
#: a backlog this long means "under load": initiators must echo a cookie
HANDSHAKE_LOAD = HANDSHAKE_BACKLOG // 4
#: initiations answered per loop callback (the rest wait for the next one)
HANDSHAKE_BUDGET = 8
TICK_INTERVAL = 0.25
ZERO4 = b"\x00\x00\x00\x00"

#: handler(data, addr, via) for datagrams of a registered first byte (probes, discovery).
DatagramHandler = Callable[[bytes, Endpoint, Transport], None]
#: path_policy(peer, path) -> True to move the peer to this path (it just carried
#: an authenticated packet from the peer).
PathPolicy = Callable[[Peer, Path], bool]


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
    bad_mac1: int = 0         # handshake message without a valid mac1 (not for us, or forged)
    cookie_required: int = 0  # initiation under load without a valid cookie: cookie reply sent
    rate_limited: int = 0     # initiation over its source's per-second budget
    backlog_full: int = 0     # initiation dropped: too many waiting to be answered


def always_roam(peer: Peer, path: Path) -> bool:
    return True


class Engine:
    def __init__(self, local: StaticKeypair, tun_fd: int, transport: Transport,
                 ciphers: tuple[int, ...] = (wire.CIPHER_CHACHA20_POLY1305,),
                 timers: Timers | None = None, clock: Callable[[], float] = time.monotonic,
                 eager: bool = True, mode: str = "tun", vnet_hdr: bool = False,
                 tun_uso: bool = False) -> None:
        self.local = local
        self.tun_fd = tun_fd
        self.transport = transport
        self.ciphers = ciphers
        self.timers = timers or Timers()
        self.clock = clock
        self.eager = eager
        self.l2 = mode == "tap"
        self.table = IndexTable()
        self.peers: dict[bytes, Peer] = {}        # public key -> peer
        # TUN: packed IPv4 and IPv6 overlay address -> peer; TAP: MAC -> peer
        self.routes: dict[bytes, Peer] = {}
        # Approved gateway routes (TUN mode): LAN prefix -> the gateway peer, looked up
        # only for destinations that are no peer's overlay address.
        self.prefix_routes = PrefixTable()
        self.drops = DropCounters()
        self.frame_handlers: list[FrameHandler] = []
        self.datagram_handlers: dict[int, DatagramHandler] = {}
        self.path_policy: PathPolicy = always_roam
        self.on_peer_up: Callable[[Peer], None] = lambda p: None
        self.guard = CookieChecker(local.public, clock)
        # A TUN with a virtio-net header (offloads) is read and written in batches.
        self.batched = BatchedInterface(self, tun_uso) if vnet_hdr and mode == "tun" else None
        # Single datagrams go to the TUN at once; batches (on_datagrams) are coalesced.
        self.deliver: Callable[[bytes], None] = (
            self.batched.write_plain if self.batched is not None else self._write_tun)
        self._backlog: deque[tuple[wire.HandshakeInit, Endpoint, Transport]] = deque()
        self._draining = False
        self._last_ts = 0
        self._tick_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------ peers
    def _route_keys(self, p: Peer) -> list[bytes]:
        return [p.mac] if self.l2 else [p.vip_packed, p.vip6_packed]

    def _path(self, ep: Endpoint | Path) -> Path:
        return ep if isinstance(ep, Path) else Path.over(self.transport, ep)

    def add_peer(self, name: str, public_key: bytes, virtual_ip: str,
                 endpoint: Endpoint | Path | None,
                 candidates: list[Endpoint | Path] | None = None) -> Peer:
        """Add a peer, or update the name, address and candidates of a known one.

        Plain endpoints are on the main transport; ``Path`` values name their own.
        """
        if public_key == self.local.public:
            raise ValueError(f"peer {name!r} has this node's own public key")
        first = None if endpoint is None else self._path(endpoint)
        p = self.peers.get(public_key)
        if p is None:
            p = Peer(name, public_key, virtual_ip, first, self.table, self.timers)
            self.peers[public_key] = p
        else:  # the path is left to roaming and path choice
            p.name = name
            if p.virtual_ip != virtual_ip:
                self._unroute(p)
                p.set_virtual_ip(virtual_ip)
            if p.path is None and first is not None:
                p.set_path(first, "announced")
        p.candidates = ([self._path(c) for c in candidates] if candidates
                        else ([] if first is None else [first]))
        for k in self._route_keys(p):
            self.routes[k] = p
        return p

    def _unroute(self, p: Peer) -> None:
        for k in self._route_keys(p):
            if self.routes.get(k) is p:
                del self.routes[k]

    def remove_peer(self, public_key: bytes) -> None:
        p = self.peers.pop(public_key, None)
        if p is not None:
            p.expire_all()
            self._unroute(p)

    def _timestamp(self) -> int:
        ts = max(time.time_ns(), self._last_ts + 1)
        self._last_ts = ts
        return ts

    # ------------------------------------------------------------ lifecycle
    async def start(self, autotick: bool = True) -> None:
        """Bind the transport and start reading; ``autotick=False`` leaves timers to the caller."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.transport.bind_batches(self.on_datagrams, self.on_burst_end)
        await self.transport.start(loop, self.on_datagram)
        # The transport may rebind its send at start: refresh what peers hold.
        for p in self.peers.values():
            if p.path is not None and p.path.transport is self.transport:
                p.set_path(p.path, "transport started")
        if self.batched is not None:
            loop.add_reader(self.tun_fd, self.batched.on_interface_readable)
            loop.call_later(2.0, checksum.warm_up)  # before the first super-packet needs it
        else:
            loop.add_reader(self.tun_fd, self.on_interface_readable)
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
        for p in list(self.peers.values()):
            for pkt in p.tick(now, self.local, self._timestamp(), self.ciphers, self.eager):
                if pkt[:4] == wire.INIT_PREFIX:
                    self._send_initiation(p, pkt)
                else:
                    self._send(p.send, pkt, p.endpoint)

    def _send(self, send: Callable[[bytes, Endpoint], None], pkt: bytes, ep: Endpoint) -> None:
        try:
            send(pkt, ep)
        except OSError:
            self.drops.send_failed += 1

    def _send_initiation(self, peer: Peer, pkt: bytes) -> None:
        """Without a working session, try every known candidate address at once.

        Whichever answers wins (roaming moves the endpoint to it); duplicates
        that arrive by several paths are refused by the initiation timestamp.
        """
        self._send(peer.send, pkt, peer.endpoint)
        if peer.current is None:
            for c in peer.candidates:
                if c != peer.path:
                    self._send(c.transport.send, pkt, c.endpoint)

    # ------------------------------------------------------------ hot path: interface -> peer
    def on_interface_readable(self) -> None:
        """Drain the interface: route each packet (by IP in TUN mode, MAC in TAP mode),
        seal it with the peer's current session and send it on the peer's path."""
        read = os.read
        fd = self.tun_fd
        routes = self.routes
        l2 = self.l2
        for _ in range(TUN_BATCH):
            try:
                pkt = read(fd, 65536)
            except OSError:  # BlockingIOError: drained
                return
            n = len(pkt)
            if l2:
                if n < 14:
                    self.drops.malformed += 1
                    continue
                peer = routes.get(pkt[0:6])
            else:
                v = pkt[0] >> 4 if n else 0
                if v == 4 and n >= 20:
                    peer = routes.get(pkt[16:20])
                elif v == 6 and n >= 40:
                    peer = routes.get(pkt[24:40])
                else:
                    self.drops.malformed += 1
                    continue
            if peer is None:  # broadcast, multicast, unknown destination
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
                peer.send(header + s.encrypt(ZERO4 + ctr, pkt, header), peer.endpoint)
            except OSError:
                self.drops.send_failed += 1
                continue
            st = peer.stats
            st.tx_packets += 1
            st.tx_bytes += n

    def _write_tun(self, pkt: bytes) -> None:
        try:
            os.write(self.tun_fd, pkt)
        except OSError:
            pass

    def _unrouted(self, pkt: bytes) -> None:
        if self.prefix_routes and pkt[0] >> 4 == 4:
            gw = self.prefix_routes.lookup(pkt[16:20])
            if gw is not None:
                self.send_to_peer(gw, pkt)  # type: ignore[arg-type]
                return
        for h in self.frame_handlers:
            if h(pkt):
                return
        self.drops.no_route += 1

    def _stage(self, peer: Peer, pkt: bytes) -> None:
        peer.staged.append(pkt)
        if peer.initiator is None and (peer.endpoint is not None or peer.candidates):
            hs = peer.begin_handshake(self.local, self.clock(), self._timestamp(), self.ciphers)
            if hs is not None:
                self._send_initiation(peer, hs)

    def kick(self, peer: Peer) -> None:
        """The peer's path changed: without a tunnel yet, handshake over it now."""
        if peer.current is None:
            hs = peer.begin_handshake(self.local, self.clock(), self._timestamp(), self.ciphers)
            if hs is not None:
                self._send_initiation(peer, hs)

    def send_to_peer(self, peer: Peer, pkt: bytes) -> bool:
        """Slow-path send of one interface packet (frame handlers, flushes)."""
        s = peer.current
        if s is None or peer.endpoint is None:
            self._stage(peer, pkt)
            return False
        self._send(peer.send, s.seal(pkt), peer.endpoint)
        peer.stats.tx_packets += 1
        peer.stats.tx_bytes += len(pkt)
        return True

    # ------------------------------------------------------------ hot path: transport -> interface
    def on_datagram(self, data: bytes, addr: Endpoint, via: Transport | None = None) -> None:
        """A datagram from a transport; ``via`` is that transport (None: the main one)."""
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
            if addr != peer.endpoint or (via or self.transport) is not peer.via:
                self._roam(peer, addr, via or self.transport)
            st = peer.stats
            st.rx_packets += 1
            if not pt:
                return  # keepalive
            if self.l2:
                if pt[6:12] != peer.mac:
                    self.drops.spoofed_source += 1
                    return
            elif not (pt[12:16] == peer.vip_packed and pt[0] >> 4 == 4) and \
                    not self._other_source_ok(peer, pt):
                self.drops.spoofed_source += 1
                return
            st.rx_bytes += len(pt)
            self.deliver(pt)
            return
        self._control_datagram(data, addr, via)

    def on_datagrams(self, batch: list[Any], addr: Endpoint,
                     via: Transport | None = None) -> None:
        """Several datagrams from one sender (one UDP GRO read): ``on_datagram`` for each,
        with the lookups hoisted out of the loop.

        Items may be memoryviews of the transport's receive buffer: data packets are
        decrypted straight from it; anything else is copied before it is handled.
        A transport that delivers batches calls ``on_burst_end`` after each one, so
        packets for the TUN are only collected here (and merged per flow).
        """
        sessions = self.table.sessions
        deliver = self.batched.rx.add if self.batched is not None else self.deliver
        drops = self.drops
        l2 = self.l2
        transport = via or self.transport
        prefix = wire.DATA_PREFIX
        last_idx: Any = None
        s: Any = None
        peer: Any = None
        fresh = False
        for data in batch:
            if len(data) < 32 or data[:4] != prefix:
                self._control_datagram(bytes(data), addr, via)
                last_idx = None  # a handshake may have rotated sessions
                continue
            idx = data[4:8]
            if idx != last_idx:
                s = sessions.get(int.from_bytes(idx, "little"))
                if s is None:
                    drops.unknown_index += 1
                    last_idx = None
                    continue
                last_idx = idx
                fresh = True
            ctr = data[8:16]
            try:
                pt = s.decrypt(ZERO4 + ctr, data[16:], data[:16])
            except InvalidTag:
                drops.auth += 1
                continue
            if not s.replay.check(int.from_bytes(ctr, "little")):
                drops.replay += 1
                continue
            if fresh:  # first authentic packet of this session in the batch
                fresh = False
                peer = s.peer
                peer.last_rx = s
                if not s.confirmed:
                    self._confirm(peer)
                if addr != peer.endpoint or transport is not peer.via:
                    self._roam(peer, addr, transport)
                st = peer.stats
                vip = peer.vip_packed
            st.rx_packets += 1
            if not pt:
                continue  # keepalive
            if l2:
                if pt[6:12] != peer.mac:
                    drops.spoofed_source += 1
                    continue
            elif (pt[12:16] != vip or pt[0] >> 4 != 4) and not self._other_source_ok(peer, pt):
                drops.spoofed_source += 1
                continue
            st.rx_bytes += len(pt)
            deliver(pt)

    def on_burst_end(self) -> None:
        """A transport finished handing over a batch: write what was collected for the TUN."""
        if self.batched is not None:
            self.batched.flush()

    @staticmethod
    def _other_source_ok(peer: Peer, pt: bytes) -> bool:
        """A source that is not the peer's overlay IPv4 address: a host on a LAN the peer
        is the approved gateway for; IPv6 from its overlay address, or link-local to a
        multicast group."""
        if pt[0] >> 4 == 4:
            return len(pt) >= 20 and peer.routed.allows(pt[12:16])
        if len(pt) < 40 or pt[0] >> 4 != 6:
            return False
        src = pt[8:24]
        return src == peer.vip6_packed or (src[:2] == b"\xfe\x80" and pt[24] == 0xFF)

    # ------------------------------------------------------------ slow path
    def _roam(self, peer: Peer, addr: Endpoint, via: Transport) -> None:
        path = peer.path
        if path is not None and path.endpoint == addr and path.transport is via:
            return
        path = Path.over(via, addr)
        if self.path_policy(peer, path):
            peer.set_path(path, "authenticated packet arrived on it")

    def _confirm(self, peer: Peer) -> None:
        peer.confirm_next()
        self._established(peer)

    def _established(self, peer: Peer) -> None:
        for pkt in peer.take_staged():
            self.send_to_peer(peer, pkt)
        self.on_peer_up(peer)

    def _control_datagram(self, data: bytes, addr: Endpoint, via: Transport | None) -> None:
        head = data[:4]
        try:
            if head == wire.INIT_PREFIX:
                self._screen_initiation(data, addr, via or self.transport)
            elif head == wire.RESP_PREFIX:
                msg = wire.decode_resp(data)
                if not self.guard.check_mac1(data):
                    self.drops.bad_mac1 += 1
                    return
                self._on_response(msg, addr, via or self.transport)
            elif head == wire.COOKIE_PREFIX:
                self._on_cookie_reply(data)
            else:
                # type 0 is STUN's, and only for messages that carry its magic cookie
                t = wire.TYPE_STUN if wire.is_stun(data) else (data[0] or -1) if data else -1
                h = self.datagram_handlers.get(t)
                if h is None:
                    self.drops.malformed += 1
                else:
                    h(data, addr, via or self.transport)
        except wire.MalformedPacket:
            self.drops.malformed += 1
        except HandshakeError as e:
            self.drops.handshake += 1
            log.debug("handshake from %s rejected: %s", addr, e)

    def _screen_initiation(self, data: bytes, addr: Endpoint, via: Transport) -> None:
        """The cheap checks, in order of cost, before an initiation may wait for its DH."""
        if len(data) < wire.INIT_MIN:
            raise wire.MalformedPacket("short handshake initiation")
        guard = self.guard
        if not guard.check_mac1(data):
            self.drops.bad_mac1 += 1
            return
        msg = wire.decode_init(data)
        backlog = self._backlog
        guard.note_load(len(backlog) >= HANDSHAKE_LOAD)
        verdict = guard.admit(msg.packet, addr)
        if verdict is Verdict.COOKIE:
            self.drops.cookie_required += 1
            self._send(via.send, guard.cookie_reply(msg.packet, msg.sender, addr), addr)
            return
        if verdict is Verdict.RATE_LIMITED:
            self.drops.rate_limited += 1
            return
        if len(backlog) >= HANDSHAKE_BACKLOG:
            self.drops.backlog_full += 1
            return
        backlog.append((msg, addr, via))
        if self._loop is None:  # not started (unit tests): answer at once
            self._drain_handshakes()
        elif not self._draining:
            self._draining = True
            self._loop.call_soon(self._drain_handshakes)

    def _drain_handshakes(self) -> None:
        """Answer up to HANDSHAKE_BUDGET initiations, then yield to the data path."""
        backlog = self._backlog
        for _ in range(HANDSHAKE_BUDGET):
            if not backlog:
                break
            msg, addr, via = backlog.popleft()
            try:
                self._on_initiation(msg, addr, via)
            except HandshakeError as e:
                self.drops.handshake += 1
                log.debug("handshake from %s rejected: %s", addr, e)
        if backlog and self._loop is not None:
            self._loop.call_soon(self._drain_handshakes)
        else:
            self._draining = False

    def _on_cookie_reply(self, data: bytes) -> None:
        peer = self.table.pending.get(wire.decode_cookie_receiver(data))
        if peer is None or not peer.macs.consume_reply(data, self.clock()):
            self.drops.handshake += 1
            return
        # the next retry carries the cookie (mac2); the retry timer is already running
        log.debug("peer %s: under load, got a cookie", peer.name)

    def _on_initiation(self, msg: wire.HandshakeInit, addr: Endpoint, via: Transport) -> None:
        found: list[Peer] = []

        def accept(remote_static: bytes, ts: int) -> bool:
            p = self.peers.get(remote_static)
            if p is None or not p.accept_initiation(remote_static, ts):
                return False
            found.append(p)
            return True

        now = self.clock()
        resp = handshake.respond(self.local, msg, self.table.allocate(), accept, self.ciphers,
                                 lambda rs, body: found[0].macs.seal(body, now))
        peer = found[0]
        peer.on_initiation(resp.keys, resp.timestamp_ns, now)
        self._roam(peer, addr, via)
        self._send(via.send, resp.packet, addr)
        log.debug("peer %s: answered handshake from %s", peer.name, addr)

    def _on_response(self, msg: wire.HandshakeResp, addr: Endpoint, via: Transport) -> None:
        peer = self.table.pending.get(msg.receiver)
        if peer is None:
            raise HandshakeError("response to no pending handshake")
        s = peer.on_response(msg, self.clock())
        self._roam(peer, addr, via)
        log.info("peer %s: tunnel up (%s, rtt %.1f ms)", peer.name,
                 wire.CIPHER_NAMES[s.cipher], peer.rtt_ms or 0.0)
        staged = peer.take_staged()
        if staged:
            for pkt in staged:
                self.send_to_peer(peer, pkt)
        else:  # confirm the session to the responder right away
            self._send(peer.send, s.seal(b""), peer.endpoint)
        self.on_peer_up(peer)

    def offload_status(self, tun: Any) -> dict[str, Any]:
        """Which offloads are active, for ``status --json`` (node.offloads)."""
        b = self.batched
        return {
            "tun": list(tun.offloads) if b is not None and tun is not None else [],
            "transport": self.transport.offloads(),
            "super_packets_in": b.super_packets_in if b else 0,
            "super_packets_out": b.super_packets_out if b else 0,
            "coalesced": b.rx.coalesced if b else 0,
        }

    def drop_counts(self) -> dict[str, int]:
        return asdict(self.drops)
