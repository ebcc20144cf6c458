"""Two whole engines wired in memory: fake TUNs, a fake network, an injected clock."""

from __future__ import annotations

import asyncio

import pytest
from shoal import wire
from shoal.engine import Engine
from shoal.identity import StaticKeypair
from shoal.peer import Timers
from shoal.testing.fakes import FakeNetwork, FakeTun, ipv4_packet

A_EP = ("198.51.100.1", 41641)
B_EP = ("198.51.100.2", 41641)
A_IP, B_IP = "100.64.0.1", "100.64.0.2"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Pair:
    def __init__(self, timers: Timers | None = None, ciphers=(wire.CIPHER_CHACHA20_POLY1305,)):
        self.net = FakeNetwork()
        self.clock = Clock()
        self.ka, self.kb = StaticKeypair.generate(), StaticKeypair.generate()
        self.timers = timers or Timers(keepalive=10)
        self.ciphers = ciphers
        self.tun_a, self.tun_b = FakeTun(), FakeTun()
        self.a = self._engine(self.ka, self.tun_a, A_EP)
        self.b = self._engine(self.kb, self.tun_b, B_EP)
        self.pa = self.a.add_peer("b", self.kb.public, B_IP, B_EP)
        self.pb = self.b.add_peer("a", self.ka.public, A_IP, A_EP)

    def _engine(self, key, tun, ep):
        return Engine(key, tun.fileno(), self.net.transport(ep), self.ciphers, self.timers,
                      clock=self.clock)

    async def start(self):
        await self.a.start(autotick=False)
        await self.b.start(autotick=False)

    async def settle(self, rounds: int = 5):
        for _ in range(rounds):
            await asyncio.sleep(0.005)

    async def initiation_from_a(self) -> bytes:
        """Run a's timers once and return the handshake initiation it sends."""
        self.net.sent.clear()
        await self.tick()
        return next(d for d, s, _ in self.net.sent if d[:4] == wire.INIT_PREFIX and s == A_EP)

    async def tick(self, dt: float = 0.25):
        self.clock.t += dt
        self.a.tick()
        self.b.tick()
        await self.settle()

    async def connect(self):
        await self.start()
        await self.tick()
        assert self.pa.current is not None and self.pb.current is not None

    def close(self):
        self.a.stop()
        self.b.stop()


def run(coro):
    return asyncio.run(coro)


def test_ping_both_ways():
    async def main():
        p = Pair()
        await p.connect()
        p.tun_a.inject(ipv4_packet(A_IP, B_IP, b"ping"))
        p.tun_b.inject(ipv4_packet(B_IP, A_IP, b"pong"))
        await p.settle()
        assert p.tun_b.delivered() == [ipv4_packet(A_IP, B_IP, b"ping")]
        assert p.tun_a.delivered() == [ipv4_packet(B_IP, A_IP, b"pong")]
        assert p.pa.stats.tx_bytes == p.pb.stats.rx_bytes > 0
        p.close()
    run(main())


def test_packets_before_handshake_are_staged_then_sent():
    async def main():
        p = Pair()
        await p.start()
        for i in range(5):
            p.tun_a.inject(ipv4_packet(A_IP, B_IP, bytes([i]) * 8))
        await p.settle(10)
        assert len(p.tun_b.delivered()) == 5
        p.close()
    run(main())


@pytest.mark.parametrize("ciphers", [(1,), (2,)])
def test_ciphers(ciphers):
    async def main():
        p = Pair(ciphers=ciphers)
        await p.connect()
        assert p.pa.current.cipher == ciphers[0]
        p.tun_a.inject(ipv4_packet(A_IP, B_IP))
        await p.settle()
        assert len(p.tun_b.delivered()) == 1
        p.close()
    run(main())


def test_rekey_by_time_loses_nothing():
    async def main():
        p = Pair(Timers(rekey_after_time=30, keepalive=10))
        await p.connect()
        first = p.pa.current
        sent = 0
        for step in range(200):  # 50 s of traffic both ways, ticking every 0.25 s
            p.tun_a.inject(ipv4_packet(A_IP, B_IP, step.to_bytes(4, "big")))
            p.tun_b.inject(ipv4_packet(B_IP, A_IP, step.to_bytes(4, "big")))
            sent += 1
            await p.tick()
        assert p.pa.current is not first
        assert p.pa.stats.rekeys >= 1
        assert len(p.tun_b.delivered()) == sent
        assert len(p.tun_a.delivered()) == sent
        p.close()
    run(main())


def test_rekey_by_volume_loses_nothing():
    async def main():
        p = Pair(Timers(rekey_after_messages=40, keepalive=10))
        await p.connect()
        n = 0
        for step in range(20):
            for _ in range(10):
                p.tun_a.inject(ipv4_packet(A_IP, B_IP, n.to_bytes(4, "big")))
                n += 1
            await p.tick()
        got = p.tun_b.delivered()
        assert len(got) == n
        assert p.pa.stats.handshakes >= 4
        p.close()
    run(main())


def test_lost_initiations_are_retried_with_backoff():
    async def main():
        p = Pair()
        lost = []

        def drop_first_inits(data, src, dst):
            if data[:4] == wire.INIT_PREFIX and src == A_EP and len(lost) < 3:
                lost.append(p.clock.t)
                return []
            return [data]
        p.net.filter = drop_first_inits
        p.b.eager = False  # only a initiates
        await p.start()
        for _ in range(80):
            await p.tick()
            if p.pa.current is not None:
                break
        assert p.pa.current is not None
        gaps = [b - a for a, b in zip(lost, lost[1:])]
        assert gaps[0] >= 0.75 and gaps[1] > gaps[0]  # exponential, jittered
        p.close()
    run(main())


def test_replay_tamper_garbage_are_dropped_and_counted():
    async def main():
        p = Pair()
        await p.connect()
        p.net.sent.clear()
        p.tun_a.inject(ipv4_packet(A_IP, B_IP, b"original"))
        await p.settle()
        assert len(p.tun_b.delivered()) == 1
        data = next(d for d, s, _ in p.net.sent if d[:4] == wire.DATA_PREFIX and s == A_EP)
        attacker = ("203.0.113.66", 5555)
        p.b.on_datagram(data, attacker)  # replay from elsewhere
        flipped = bytearray(data)
        flipped[-1] ^= 1
        p.b.on_datagram(bytes(flipped), attacker)
        p.b.on_datagram(b"\xff" * 64, attacker)
        p.b.on_datagram(wire.DATA_PREFIX + b"\x00" * 3, attacker)
        p.b.on_datagram(b"", attacker)
        p.b.on_datagram(wire.INIT_PREFIX + b"\x00" * 20, attacker)
        p.b.on_datagram(wire.DATA_PREFIX + b"\x01\x02\x03\x04" + b"\x00" * 40, attacker)
        d = p.b.drops
        assert (d.replay, d.auth, d.malformed, d.unknown_index) == (1, 1, 4, 1)
        assert p.pb.endpoint == A_EP  # neither moved the peer's endpoint
        assert p.tun_b.delivered() == []
        p.tun_a.inject(ipv4_packet(A_IP, B_IP, b"still works"))
        await p.settle()
        assert len(p.tun_b.delivered()) == 1
        p.close()
    run(main())


def test_spoofed_inner_source_is_dropped():
    async def main():
        p = Pair()
        await p.connect()
        # a's interface hands the engine a packet claiming another node's address
        p.tun_a.inject(ipv4_packet("100.64.0.9", B_IP, b"spoof"))
        await p.settle()
        assert p.tun_b.delivered() == []
        assert p.b.drops.spoofed_source == 1
        p.close()
    run(main())


def test_roaming_follows_authenticated_packets():
    async def main():
        p = Pair()
        await p.connect()
        new_ep = ("192.0.2.7", 40000)
        # a's address changes under the same socket (NAT rebinding)
        t = p.a.transport
        del p.net.transports[t.addr]
        t.addr = new_ep
        p.net.transports[new_ep] = t
        p.tun_a.inject(ipv4_packet(A_IP, B_IP))
        await p.settle()
        assert p.pb.endpoint == new_ep
        p.tun_b.inject(ipv4_packet(B_IP, A_IP))
        await p.settle()
        assert len(p.tun_a.delivered()) == 1
        p.close()
    run(main())


def test_replayed_initiation_rejected_and_unknown_key_refused():
    async def main():
        p = Pair()
        await p.start()
        init = await p.initiation_from_a()
        before = p.b.drops.handshake
        p.b.on_datagram(init, A_EP)
        await p.settle()
        assert p.b.drops.handshake == before + 1
        stranger_tun = FakeTun()
        stranger = Engine(StaticKeypair.generate(), stranger_tun.fileno(),
                          p.net.transport(("192.0.2.9", 1)), clock=p.clock)
        stranger.add_peer("b", p.kb.public, B_IP, B_EP)
        await stranger.start(autotick=False)
        stranger.tick()
        await p.settle()
        assert p.b.drops.handshake == before + 2
        assert stranger.peers[p.kb.public].current is None
        p.close()
    run(main())


def test_restarted_peer_reconnects_without_restarting_other():
    async def main():
        p = Pair()
        await p.connect()
        p.b.stop()
        p.net.transports.pop(B_EP, None)
        tun_b2 = FakeTun()
        b2 = Engine(p.kb, tun_b2.fileno(), p.net.transport(B_EP), p.ciphers, p.timers,
                    clock=p.clock)
        b2.add_peer("a", p.ka.public, A_IP, A_EP)
        await b2.start(autotick=False)
        p.clock.t += 0.25
        b2.tick()
        await p.settle()
        p.tun_a.inject(ipv4_packet(A_IP, B_IP, b"after restart"))
        await p.settle()
        assert tun_b2.delivered() == [ipv4_packet(A_IP, B_IP, b"after restart")]
        b2.stop()
        p.a.stop()
    run(main())


def test_keepalives_when_idle():
    async def main():
        p = Pair(Timers(keepalive=5))
        await p.connect()
        rx = p.pb.stats.rx_packets
        for _ in range(4 * 12):  # 12 s idle
            await p.tick()
        assert p.pb.stats.rx_packets >= rx + 2
        assert p.pa.online(p.clock.t) and p.pb.online(p.clock.t)
        p.close()
    run(main())


def test_dead_peer_goes_offline():
    async def main():
        p = Pair(Timers(keepalive=2))
        await p.connect()
        p.b.stop()
        p.net.transports.pop(B_EP, None)
        for _ in range(4 * 20):
            await p.tick()
        assert not p.pa.online(p.clock.t)
        p.a.stop()
    run(main())


# ---------------------------------------------------------------- handshake DoS defence
def test_random_initiations_cost_no_handshake_and_tunnel_still_forms():
    async def main():
        import os as _os
        p = Pair()
        await p.start()
        for i in range(500):  # random contents from many (spoofed) sources
            junk = wire.INIT_PREFIX + _os.urandom(4 + 106 + 32)
            p.b.on_datagram(junk, (f"203.0.113.{i % 250}", 1000 + i))
        assert p.b.drops.bad_mac1 == 500
        assert p.b.drops.handshake == 0  # no Noise work was attempted for any of them
        await p.connect()
        p.tun_a.inject(ipv4_packet(A_IP, B_IP))
        await p.settle()
        assert len(p.tun_b.delivered()) == 1
        p.close()
    run(main())


def test_under_load_initiator_gets_cookie_and_then_connects():
    async def main():
        p = Pair()
        await p.start()
        p.b.guard.note_load(True)  # the responder is busy
        p.tun_a.inject(ipv4_packet(A_IP, B_IP))
        await p.settle()
        assert p.b.drops.cookie_required == 1
        assert p.pa.macs.has_cookie and p.pa.current is None
        # the retry carries mac2 and is answered, load or not
        p.b.guard.note_load(True)
        for _ in range(8):
            await p.tick(0.5)
            p.b.guard.note_load(True)
            if p.pa.current is not None:
                break
        assert p.pa.current is not None
        await p.settle()
        assert len(p.tun_b.delivered()) == 1
        p.close()
    run(main())


def test_initiations_from_one_source_are_rate_limited():
    async def main():
        p = Pair()
        await p.start()
        init = await p.initiation_from_a()
        for _ in range(100):  # valid mac1, same packet replayed from one host
            p.b.on_datagram(init, A_EP)
        await p.settle()
        assert p.b.drops.rate_limited >= 100 - int(p.b.guard.burst)
        p.close()
    run(main())


def test_stun_messages_go_to_the_stun_handler_whatever_their_first_byte():
    from shoal import stun

    async def main():
        p = Pair()
        await p.connect()
        got = []
        p.b.datagram_handlers[wire.TYPE_STUN] = lambda d, a, v: got.append((d[:2], a))
        req = stun.encode(stun.binding_request())
        resp = stun.encode(stun.Message(stun.Method.BINDING, stun.Class.RESPONSE,
                                        attributes={"XOR-MAPPED-ADDRESS": A_EP}))
        err = stun.encode(stun.error_response(stun.binding_request(), 420, "Unknown"))
        for msg in (req, resp, err):
            p.b.on_datagram(msg, ("203.0.113.10", 3478))
        assert [k for k, _ in got] == [b"\x00\x01", b"\x01\x01", b"\x01\x11"]
        before = p.b.drops.malformed
        p.b.on_datagram(b"\x00\x01\x00\x00" + b"\x00" * 16, ("203.0.113.10", 3478))  # no cookie
        assert p.b.drops.malformed == before + 1 and len(got) == 3
        p.tun_a.inject(ipv4_packet(A_IP, B_IP, b"tunnel unaffected"))
        await p.settle()
        assert len(p.tun_b.delivered()) == 1
        p.close()
    run(main())
