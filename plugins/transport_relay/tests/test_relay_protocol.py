"""Relay forwarding rules: grants, networks, return routability, replay, revocation,
rate limit and bounds (sans-IO)."""

import os

from shoal_transport_relay import protocol as p

SECRET = os.urandom(32)
A_KEY, B_KEY, C_KEY = os.urandom(32), os.urandom(32), os.urandom(32)
A_ADDR, B_ADDR, EVIL = ("udp", ("198.51.100.1", 1)), ("udp", ("198.51.100.2", 2)), ("udp", ("192.0.2.66", 6))
WALL = 1_800_000_000.0
LAN = [p.network_tag("lan")]


def alloc(core, key, addr, now=0.0, ts_ms=None, secret=SECRET, expires=None, tags=LAN,
          cookie=p.NO_COOKIE, routable=False):
    expires = int(WALL) + 600 if expires is None else expires
    token = p.make_token(secret, key, expires, tags)
    msg = p.encode_alloc(token, key, expires, ts_ms or int(WALL * 1000 + now * 1000), tags, cookie)
    return core.handle(msg, addr, now, WALL + now, routable=routable), msg


def register(core, key, addr, now=0.0, tags=LAN):
    """ALLOC, answer the challenge, and check the registration took."""
    out, _ = alloc(core, key, addr, now, tags=tags)
    assert out[0][1][2] == p.CHALLENGE
    ts, cookie = p.decode_challenge(out[0][1])
    out, _ = alloc(core, key, addr, now, ts_ms=ts + 1, tags=tags, cookie=cookie)
    assert out == [(addr, p.encode_alloced(ts + 1))]


def test_forward_between_registered_nodes_only():
    core = p.RelayCore(SECRET)
    register(core, A_KEY, A_ADDR)
    register(core, B_KEY, B_ADDR)
    fwd = core.handle(p.encode_send(p.node_id(B_KEY), b"sealed"), A_ADDR, 1.0, WALL)
    assert fwd == [(B_ADDR, b"SR\x04" + p.node_id(A_KEY) + b"sealed")]
    # unregistered source: refused; unknown destination: dropped
    assert core.handle(p.encode_send(p.node_id(B_KEY), b"x"), EVIL, 1.0, WALL)[0][1][2] == p.REFUSED
    assert core.handle(p.encode_send(p.node_id(C_KEY), b"x"), A_ADDR, 1.0, WALL) == []
    assert core.counters.forwarded == 1 and core.counters.dropped_no_destination == 1


def test_no_forwarding_between_nodes_sharing_no_network():
    core = p.RelayCore(SECRET)
    register(core, A_KEY, A_ADDR, tags=[p.network_tag("a")])
    register(core, B_KEY, B_ADDR, tags=[p.network_tag("b"), p.network_tag("c")])
    register(core, C_KEY, EVIL, tags=[])          # a key that belongs to no network
    for src, dst in ((A_ADDR, B_KEY), (B_ADDR, A_KEY), (EVIL, A_KEY), (EVIL, B_KEY)):
        assert core.handle(p.encode_send(p.node_id(dst), b"x"), src, 1.0, WALL) == []
    assert core.counters.dropped_no_shared_network == 4 and core.counters.forwarded == 0
    # B joins "a": its new grant names it, and the pair is forwarded
    out, _ = alloc(core, B_KEY, B_ADDR, 2.0, tags=[p.network_tag("a"), p.network_tag("b")])
    assert out[0][1][2] == p.ALLOCED
    assert core.handle(p.encode_send(p.node_id(B_KEY), b"x"), A_ADDR, 2.0, WALL)


def test_tags_are_covered_by_the_grant():
    core = p.RelayCore(SECRET)
    expires = int(WALL) + 600
    token = p.make_token(SECRET, A_KEY, expires, [p.network_tag("a")])
    forged = p.encode_alloc(token, A_KEY, expires, int(WALL * 1000), [p.network_tag("b")])
    assert core.handle(forged, A_ADDR, 0.0, WALL, routable=True)[0][1] == \
        p.encode_refused(p.REFUSE_BAD_GRANT)


def test_spoofed_registration_does_not_move_a_binding():
    core = p.RelayCore(SECRET)
    register(core, A_KEY, A_ADDR)
    register(core, B_KEY, B_ADDR)
    # C holds a valid grant and spoofs A's address: it gets a challenge (sent to A), no binding
    out, _ = alloc(core, C_KEY, A_ADDR, 1.0)
    assert out[0][1][2] == p.CHALLENGE and p.node_id(C_KEY) not in core.by_id
    # A's own fresh ALLOC replayed from elsewhere: a challenge to that address, A stays put
    out, _ = alloc(core, A_KEY, EVIL, 1.5)
    assert out[0][1][2] == p.CHALLENGE and out[0][0] == EVIL
    assert core.by_id[p.node_id(A_KEY)].addr == A_ADDR and core.by_addr[A_ADDR].key == A_KEY
    # a cookie made for another address does not bind this one
    ok_cookie = core.cookie(A_KEY, A_ADDR, WALL + 2)
    out, _ = alloc(core, A_KEY, EVIL, 2.0, cookie=ok_cookie)
    assert out[0][1][2] == p.CHALLENGE and core.by_id[p.node_id(A_KEY)].addr == A_ADDR
    fwd = core.handle(p.encode_send(p.node_id(B_KEY), b"x"), A_ADDR, 3.0, WALL)
    assert fwd[0][1][3:11] == p.node_id(A_KEY)   # A's traffic still labelled as A's
    # a real move (NAT rebind) proves the new address and moves the binding
    register(core, A_KEY, EVIL, 4.0)
    assert core.by_id[p.node_id(A_KEY)].addr == EVIL and A_ADDR not in core.by_addr


def test_tcp_connections_need_no_challenge():
    core = p.RelayCore(SECRET)
    conn = ("tcp", object())
    out, _ = alloc(core, A_KEY, conn, routable=True)
    assert out[0][1][2] == p.ALLOCED


def test_replies_are_never_larger_than_requests():
    core = p.RelayCore(SECRET)
    out, msg = alloc(core, A_KEY, A_ADDR, tags=[])
    assert len(out[0][1]) < len(msg)


def test_grant_must_come_from_the_server_secret():
    core = p.RelayCore(SECRET)
    out, _ = alloc(core, A_KEY, A_ADDR, secret=os.urandom(32))
    assert out[0][1][2] == p.REFUSED and not core.by_id


def test_first_version_alloc_is_refused():
    core = p.RelayCore(SECRET)
    out = core.handle(b"SR\x01" + bytes(80), A_ADDR, 0.0, WALL)
    assert out[0][1] == p.encode_refused(p.REFUSE_BAD_GRANT)


def test_expired_grant_and_replayed_alloc():
    core = p.RelayCore(SECRET)
    out, _ = alloc(core, A_KEY, A_ADDR, expires=int(WALL) - 1)
    assert out[0][1][3] == p.REFUSE_EXPIRED
    register(core, A_KEY, A_ADDR)
    reg = core.by_id[p.node_id(A_KEY)]
    # an eavesdropper replays the accepted ALLOC, from anywhere: nothing moves, no answer
    cookie = core.cookie(A_KEY, A_ADDR, WALL)
    _, msg = alloc(core, A_KEY, A_ADDR, ts_ms=reg.last_ts, cookie=cookie)
    assert core.handle(msg, EVIL, 2.0, WALL + 2) == []
    assert core.handle(msg, A_ADDR, 2.0, WALL + 2) == []
    assert core.by_id[p.node_id(A_KEY)].addr == A_ADDR


def test_revoked_grants_are_refused_until_a_new_one():
    core = p.RelayCore(SECRET, grant_lifetime=600)
    register(core, A_KEY, A_ADDR)
    register(core, B_KEY, B_ADDR)
    core.revoke(A_KEY, WALL + 5)
    assert p.node_id(A_KEY) not in core.by_id and A_ADDR not in core.by_addr
    assert core.handle(p.encode_send(p.node_id(B_KEY), b"x"), A_ADDR, 6.0, WALL)[0][1][2] == \
        p.REFUSED
    # the old grant (issued before the revocation) is refused
    out, _ = alloc(core, A_KEY, A_ADDR, 6.0, cookie=core.cookie(A_KEY, A_ADDR, WALL + 6))
    assert out[0][1] == p.encode_refused(p.REFUSE_REVOKED)
    # a grant the server issued afterwards works
    out, _ = alloc(core, A_KEY, A_ADDR, 6.0, expires=int(WALL) + 5 + 600,
                   cookie=core.cookie(A_KEY, A_ADDR, WALL + 6))
    assert out[0][1][2] == p.ALLOCED
    core.expire(0.0, WALL + 5 + 600 + 200)
    assert not core.revoked


def test_registrations_are_bounded():
    core = p.RelayCore(SECRET, max_registrations=2)
    for i in range(2):
        alloc(core, os.urandom(32), ("tcp", i), routable=True)
    out, _ = alloc(core, A_KEY, ("tcp", 9), routable=True)
    assert out[0][1] == p.encode_refused(p.REFUSE_FULL) and len(core.by_id) == 2
    core.expire(p.REGISTRATION_TTL + 1)
    out, _ = alloc(core, A_KEY, ("tcp", 9), p.REGISTRATION_TTL + 1, routable=True)
    assert out[0][1][2] == p.ALLOCED


def test_rate_limit():
    core = p.RelayCore(SECRET, rate_bytes_per_s=1000, burst_bytes=1000)
    register(core, A_KEY, A_ADDR)
    register(core, B_KEY, B_ADDR)
    sent = [core.handle(p.encode_send(p.node_id(B_KEY), b"x" * 400), A_ADDR, 0.0, WALL)
            for _ in range(5)]
    assert sum(1 for s in sent if s) == 2 and core.counters.dropped_rate == 3
    assert core.handle(p.encode_send(p.node_id(B_KEY), b"x" * 400), A_ADDR, 1.0, WALL)


def test_malformed_and_expiry():
    core = p.RelayCore(SECRET)
    for junk in (b"", b"SR", b"XX\x03" + b"\x00" * 20, b"SR\x06short", b"SR\x09",
                 b"SR\x06" + bytes(p.ALLOC_HEAD.size - 4) + b"\xff" + bytes(40)):
        assert core.handle(junk, A_ADDR, 0.0, WALL) == []
    assert core.counters.dropped_malformed == 6
    register(core, A_KEY, A_ADDR)
    core.expire(p.REGISTRATION_TTL + 1)
    assert not core.by_id and not core.by_addr


def test_revoke_message_from_the_server_drops_older_grants_only():
    core = p.RelayCore(SECRET, grant_lifetime=600)
    register(core, A_KEY, A_ADDR)
    register(core, B_KEY, B_ADDR)
    server = ("udp", ("203.0.113.10", 40000))
    msg = p.encode_revoke(SECRET, A_KEY, int(WALL) + 5, int((WALL + 5) * 1000))
    out = core.handle(msg, server, 5.0, WALL + 5)
    assert out == [(server, p.encode_revoked(SECRET, A_KEY, int((WALL + 5) * 1000)))]
    assert len(out[0][1]) < len(msg)                      # no amplification
    assert p.check_revoked(SECRET, A_KEY, int((WALL + 5) * 1000), out[0][1])
    assert not p.check_revoked(SECRET, B_KEY, int((WALL + 5) * 1000), out[0][1])
    assert p.node_id(A_KEY) not in core.by_id and p.node_id(B_KEY) in core.by_id
    # A comes back with a grant issued after the revocation; a replayed REVOKE is harmless
    out, _ = alloc(core, A_KEY, A_ADDR, 6.0, expires=int(WALL) + 6 + 600,
                   cookie=core.cookie(A_KEY, A_ADDR, WALL + 6))
    assert out[0][1][2] == p.ALLOCED
    assert core.handle(msg, server, 7.0, WALL + 7)[0][1][2] == p.REVOKED
    assert core.by_id[p.node_id(A_KEY)].addr == A_ADDR


def test_revoke_messages_without_the_secret_or_out_of_time_are_dropped():
    core = p.RelayCore(SECRET, grant_lifetime=600)
    register(core, A_KEY, A_ADDR)
    now_ms = int(WALL * 1000)
    bad = [p.encode_revoke(os.urandom(32), A_KEY, int(WALL), now_ms),     # wrong secret
           p.encode_revoke(SECRET, A_KEY, int(WALL), now_ms - 10 * 60_000),   # stale
           p.encode_revoke(SECRET, A_KEY, int(WALL) + 3600, now_ms),     # from the future
           p.encode_revoke(SECRET, A_KEY, int(WALL), now_ms)[:-1],       # truncated
           p.encode_revoke(SECRET, A_KEY, int(WALL), now_ms) + b"x"]     # trailing bytes
    for msg in bad:
        assert core.handle(msg, EVIL, 1.0, WALL) == []
    assert core.counters.dropped_malformed == len(bad) and p.node_id(A_KEY) in core.by_id
