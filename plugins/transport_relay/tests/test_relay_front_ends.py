"""Other front ends (e.g. WSS) attach to the relay service and reach nodes on any front end."""

import os
import time

import pytest

from shoal_transport_relay import protocol as p
from shoal_transport_relay.service import RelayService

SECRET = os.urandom(32)
A_KEY, B_KEY = os.urandom(32), os.urandom(32)


def alloc(key: bytes) -> bytes:
    expires = int(time.time()) + 3600
    tags = [p.network_tag("lan")]
    return p.encode_alloc(p.make_token(SECRET, key, expires, tags), key, expires,
                          int(time.time() * 1000), tags)


def test_attached_front_end_forwards_to_and_from_the_core():
    service = RelayService(SECRET, None, None)
    sent: list[tuple[object, bytes]] = []
    service.attach("mem", lambda conn, msg: sent.append((conn, msg)))
    with pytest.raises(ValueError, match="already attached"):
        service.attach("tcp", lambda conn, msg: None)
    service.receive(alloc(A_KEY), ("mem", "conn-a"))
    service.receive(alloc(B_KEY), ("mem", "conn-b"))
    assert [m[:3] for _, m in sent] == [b"SR\x02", b"SR\x02"]
    service.receive(p.encode_send(p.node_id(B_KEY), b"sealed"), ("mem", "conn-a"))
    assert sent[-1] == ("conn-b", b"SR\x04" + p.node_id(A_KEY) + b"sealed")
    service.forget(("mem", "conn-b"))
    service.receive(p.encode_send(p.node_id(B_KEY), b"lost"), ("mem", "conn-a"))
    assert len(sent) == 3 and service.core.counters.dropped_no_destination == 1


WALL = 1_800_000_000.0
A_UDP, A_WSS, B_UDP = ("udp", ("198.51.100.1", 1)), ("wss", "conn-a"), ("udp", ("198.51.100.2", 2))


def alloc_at(core: p.RelayCore, key: bytes, addr: object, ts_ms: int, now: float = 0.0
             ) -> tuple[list, bytes]:
    """An ALLOC as the front end delivers it: a UDP address echoes the relay's cookie
    (return routability), connections are routable."""
    expires = int(WALL) + 3600
    tags = [p.network_tag("lan")]
    udp = addr[0] == "udp"  # type: ignore[index]
    cookie = core.cookie(key, addr, WALL) if udp else p.NO_COOKIE
    msg = p.encode_alloc(p.make_token(SECRET, key, expires, tags), key, expires, ts_ms, tags,
                         cookie)
    return core.handle(msg, addr, now, WALL, routable=not udp), msg


def send(core: p.RelayCore, src: object, dst_key: bytes, now: float = 1.0) -> list:
    return core.handle(p.encode_send(p.node_id(dst_key), b"x"), src, now, WALL)


def test_a_node_on_two_front_ends_is_answered_where_it_last_sent_from():
    core = p.RelayCore(SECRET)
    ms = int(WALL * 1000)
    alloc_at(core, A_KEY, A_UDP, ms)
    alloc_at(core, B_KEY, B_UDP, ms)
    alloc_at(core, A_KEY, A_WSS, ms + 10)          # the same node connects over WSS too
    assert send(core, B_UDP, A_KEY)[0][0] == A_WSS  # the newest way in is used ...
    assert send(core, A_UDP, B_KEY)                 # ... until A sends over UDP
    assert send(core, B_UDP, A_KEY)[0][0] == A_UDP
    assert send(core, A_WSS, B_KEY)                 # A sends over WSS now ...
    assert send(core, B_UDP, A_KEY)[0][0] == A_WSS  # ... so it is answered there
    alloc_at(core, A_KEY, A_UDP, ms + 20, now=2.0)  # a UDP refresh does not take it back
    assert send(core, B_UDP, A_KEY, now=2.5)[0][0] == A_WSS
    core.forget(A_WSS)                              # the WebSocket closed
    assert send(core, B_UDP, A_KEY, now=3.0)[0][0] == A_UDP


def test_replayed_alloc_cannot_add_a_front_end_and_same_front_end_moves():
    core = p.RelayCore(SECRET)
    ms = int(WALL * 1000)
    _, msg = alloc_at(core, A_KEY, A_UDP, ms)
    assert core.handle(msg, ("wss", "evil"), 1.0, WALL) == []   # replay on another front end
    assert ("wss", "evil") not in core.by_addr and core.counters.refused == 1
    moved = ("udp", ("198.51.100.9", 9))                          # NAT rebind: new UDP port
    alloc_at(core, A_KEY, moved, ms + 5)
    assert A_UDP not in core.by_addr and core.by_id[p.node_id(A_KEY)].addr == moved
    core.expire(p.REGISTRATION_TTL + 1)
    assert not core.by_id and not core.by_addr and not core.sides
