"""Relay forwarding rules: grants, registration, replay, rate limit (sans-IO)."""

import os

from shoal_transport_relay import protocol as p

SECRET = os.urandom(32)
A_KEY, B_KEY, C_KEY = os.urandom(32), os.urandom(32), os.urandom(32)
A_ADDR, B_ADDR, EVIL = ("udp", ("198.51.100.1", 1)), ("udp", ("198.51.100.2", 2)), ("udp", ("192.0.2.66", 6))
WALL = 1_800_000_000.0


def alloc(core, key, addr, now=0.0, ts_ms=None, secret=SECRET, expires=None):
    expires = int(WALL) + 3600 if expires is None else expires
    token = p.make_token(secret, key, expires)
    msg = p.encode_alloc(token, key, expires, ts_ms or int(WALL * 1000 + now * 1000))
    return core.handle(msg, addr, now, WALL + now), msg


def test_forward_between_registered_nodes_only():
    core = p.RelayCore(SECRET)
    out, _ = alloc(core, A_KEY, A_ADDR)
    assert out[0][1][:3] == b"SR\x02"
    alloc(core, B_KEY, B_ADDR)
    fwd = core.handle(p.encode_send(p.node_id(B_KEY), b"sealed"), A_ADDR, 1.0, WALL)
    assert fwd == [(B_ADDR, b"SR\x04" + p.node_id(A_KEY) + b"sealed")]
    # unregistered source: refused; unknown destination: dropped
    assert core.handle(p.encode_send(p.node_id(B_KEY), b"x"), EVIL, 1.0, WALL)[0][1][2] == p.REFUSED
    assert core.handle(p.encode_send(p.node_id(C_KEY), b"x"), A_ADDR, 1.0, WALL) == []
    assert core.counters.forwarded == 1 and core.counters.dropped_no_destination == 1


def test_grant_must_come_from_the_server_secret():
    core = p.RelayCore(SECRET)
    out, _ = alloc(core, A_KEY, A_ADDR, secret=os.urandom(32))
    assert out[0][1][2] == p.REFUSED and not core.by_id


def test_expired_grant_and_replayed_alloc():
    core = p.RelayCore(SECRET)
    out, _ = alloc(core, A_KEY, A_ADDR, expires=int(WALL) - 1)
    assert out[0][1][3] == p.REFUSE_EXPIRED
    _, msg = alloc(core, A_KEY, A_ADDR)
    # an eavesdropper replays the ALLOC from its own address: the registration must not move
    assert core.handle(msg, EVIL, 2.0, WALL + 2) == []
    assert core.by_id[p.node_id(A_KEY)].addr == A_ADDR


def test_rate_limit():
    core = p.RelayCore(SECRET, rate_bytes_per_s=1000, burst_bytes=1000)
    alloc(core, A_KEY, A_ADDR)
    alloc(core, B_KEY, B_ADDR)
    sent = [core.handle(p.encode_send(p.node_id(B_KEY), b"x" * 400), A_ADDR, 0.0, WALL)
            for _ in range(5)]
    assert sum(1 for s in sent if s) == 2 and core.counters.dropped_rate == 3
    assert core.handle(p.encode_send(p.node_id(B_KEY), b"x" * 400), A_ADDR, 1.0, WALL)


def test_malformed_and_expiry():
    core = p.RelayCore(SECRET)
    for junk in (b"", b"SR", b"XX\x03" + b"\x00" * 20, b"SR\x01short", b"SR\x09"):
        assert core.handle(junk, A_ADDR, 0.0, WALL) == []
    assert core.counters.dropped_malformed == 5
    alloc(core, A_KEY, A_ADDR)
    core.expire(p.REGISTRATION_TTL + 1)
    assert not core.by_id and not core.by_addr
