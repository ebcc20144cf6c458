from hypothesis import given, strategies as st

from shoal.server import discovery as d

EPS = [("203.0.113.10", 3478), ("203.0.113.10", 3479), ("203.0.113.11", 3478),
       ("203.0.113.11", 3479)]


def test_codec_roundtrip():
    req = d.encode_request(b"t" * 12, d.CHANGE_IP)
    assert d.decode_request(req) == (b"t" * 12, d.CHANGE_IP)
    resp = d.encode_response(b"t" * 12, ("198.51.100.7", 40000), 2)
    assert d.decode_response(resp) == (b"t" * 12, ("198.51.100.7", 40000), 2)


def test_responder_choice():
    assert d.pick_responder(EPS, 0, 0) == 0
    assert d.pick_responder(EPS, 0, d.CHANGE_PORT) == 1
    assert d.pick_responder(EPS, 0, d.CHANGE_IP) == 2
    assert d.pick_responder(EPS, 0, d.CHANGE_IP | d.CHANGE_PORT) == 3
    assert d.pick_responder(EPS[:1], 0, d.CHANGE_IP) == -1


@given(st.binary(max_size=64))
def test_decoders_never_crash(data):
    d.decode_request(data)
    d.decode_response(data)
