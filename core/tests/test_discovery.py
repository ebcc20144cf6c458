"""The server's discovery endpoints answer STUN Binding (RFC 8489) with RFC 5780 attributes."""

import asyncio
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st
from shoal import stun
from shoal.server import discovery as d

EPS = [("203.0.113.10", 3478), ("203.0.113.10", 3479), ("203.0.113.11", 3478),
       ("203.0.113.11", 3479)]
CLIENT = ("198.51.100.7", 40000)


def ask(index, flags=0, endpoints=EPS):
    req = stun.binding_request(flags)
    reply = d.answer(endpoints, index, stun.encode(req), CLIENT)
    msg = stun.decode(reply.data)
    assert msg.transaction_id == req.transaction_id
    return reply.responder, msg


def test_responder_choice():
    assert d.pick_responder(EPS, 0, 0) == 0
    assert d.pick_responder(EPS, 0, stun.CHANGE_PORT) == 1
    assert d.pick_responder(EPS, 0, stun.CHANGE_IP) == 2
    assert d.pick_responder(EPS, 0, stun.CHANGE_IP | stun.CHANGE_PORT) == 3
    assert d.pick_responder(EPS[:1], 0, stun.CHANGE_IP) == -1
    assert d.other_address(EPS, 0) == EPS[3] and d.other_address(EPS, 3) == EPS[0]
    assert d.other_address(EPS[:2], 0) is None


@pytest.mark.parametrize("index", range(4))
@pytest.mark.parametrize("flags", [0, stun.CHANGE_PORT, stun.CHANGE_IP,
                                   stun.CHANGE_IP | stun.CHANGE_PORT])
def test_binding_response(index, flags):
    responder, msg = ask(index, flags)
    assert msg.message_class == stun.Class.RESPONSE
    assert responder == d.pick_responder(EPS, index, flags)
    b = stun.BindingAnswer.from_message(msg)
    assert b.mapped == CLIENT and msg.attributes["MAPPED-ADDRESS"] == CLIENT
    assert b.origin == EPS[responder]
    assert b.other == d.other_address(EPS, index)
    assert "FINGERPRINT" in msg.attributes and msg.attributes["SOFTWARE"].startswith("shoal")


def test_change_request_that_cannot_be_honoured_is_420():
    responder, msg = ask(0, stun.CHANGE_IP, EPS[:2])
    assert responder == 0 and stun.error_of(msg)[0] == 420
    assert msg.attributes["UNKNOWN-ATTRIBUTES"] == [0x0003]


def test_unknown_required_attribute_is_420():
    data = bytearray(stun.encode(stun.binding_request(), fingerprint=False))
    data += b"\x7f\x00\x00\x00"
    data[2:4] = (len(data) - 20).to_bytes(2, "big")
    msg = stun.decode(d.answer(EPS, 0, bytes(data), CLIENT).data)
    assert stun.error_of(msg)[0] == 420 and msg.attributes["UNKNOWN-ATTRIBUTES"] == [0x7F00]


def test_only_binding_requests_are_answered():
    resp = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, attributes={})
    with pytest.raises(stun.StunError):
        d.answer(EPS, 0, stun.encode(resp), CLIENT)
    alloc = stun.Message(stun.Method.ALLOCATE, stun.Class.REQUEST, attributes={})
    with pytest.raises(stun.StunError):
        d.answer(EPS, 0, stun.encode(alloc), CLIENT)


@given(st.binary(max_size=120))
def test_garbage_is_dropped(data):
    try:
        d.answer(EPS, 0, data, CLIENT)
    except stun.StunError:
        pass


def test_source_limiter_is_bounded():
    lim = d.SourceLimiter(rate=10, max_sources=100)
    assert sum(lim.allow("198.51.100.1", 0.0) for _ in range(50)) == 10
    assert lim.allow("198.51.100.1", 0.5)  # refilled
    for i in range(1000):
        lim.allow(f"10.0.{i // 256}.{i % 256}", 1.0)
    assert len(lim._buckets) <= 100


def test_serves_on_real_sockets():
    async def main():
        counters = d.Counters()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        ts = await d.serve([f"127.0.0.1:{port}"], counters)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            s.bind(("127.0.0.1", 0))
            s.sendto(b"garbage that is not STUN", ("127.0.0.1", port))
            req = stun.binding_request()
            s.sendto(stun.encode(req), ("127.0.0.1", port))
            data = await asyncio.get_running_loop().run_in_executor(None, s.recv, 2048)
            msg = stun.decode(data)
            assert stun.BindingAnswer.from_message(msg).mapped == s.getsockname()
        for t in ts:
            t.close()
        assert counters.answered == 1 and counters.malformed == 1

    asyncio.run(main())
