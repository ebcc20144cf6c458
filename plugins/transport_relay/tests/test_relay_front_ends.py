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
    return p.encode_alloc(p.make_token(SECRET, key, expires), key, expires,
                          int(time.time() * 1000))


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
