import pytest
from hypothesis import given, settings, strategies as st

from shoal.control import messages as m
from shoal.control.channel import CHUNK, Channel, ChannelError, ServerKeyMismatch, State
from shoal.identity import StaticKeypair


def connect(server_kp, node_kp, pinned=None):
    node = Channel(node_kp, initiator=True, expected_remote=pinned or server_kp.public)
    srv = Channel(server_kp, initiator=False)
    for _ in range(3):
        srv.receive_data(node.data_to_send())
        node.receive_data(srv.data_to_send())
    return node, srv


def test_mutual_authentication():
    s, n = StaticKeypair.generate(), StaticKeypair.generate()
    node, srv = connect(s, n)
    assert node.state is State.OPEN and srv.state is State.OPEN
    assert srv.remote_static == n.public and node.remote_static == s.public


def test_wrong_server_key_is_refused_before_revealing_identity():
    s, n = StaticKeypair.generate(), StaticKeypair.generate()
    node = Channel(n, initiator=True, expected_remote=StaticKeypair.generate().public)
    srv = Channel(s, initiator=False)
    srv.receive_data(node.data_to_send())
    with pytest.raises(ServerKeyMismatch, match="presented key"):
        node.receive_data(srv.data_to_send())
    assert node.data_to_send() == b""  # message 3 (our static key) never sent


def test_messages_both_ways_with_fragmentation():
    node, srv = connect(StaticKeypair.generate(), StaticKeypair.generate())
    big = b"x" * (CHUNK * 3 + 17)
    node.send_message(b"hello")
    node.send_message(big)
    data = node.data_to_send()
    got = []
    for i in range(0, len(data), 1000):  # arbitrary TCP segmentation
        got += srv.receive_data(data[i:i + 1000])
    assert got == [b"hello", big]
    srv.send_message(b"back")
    assert node.receive_data(srv.data_to_send()) == [b"back"]


@pytest.mark.parametrize("junk", [b"GET / HTTP/1.1\r\n\r\n", b"\x00" * 10, b"SHC2....."])
def test_garbage_is_refused(junk):
    srv = Channel(StaticKeypair.generate(), initiator=False)
    with pytest.raises(ChannelError):
        srv.receive_data(junk)


def test_tampered_frame_is_refused():
    node, srv = connect(StaticKeypair.generate(), StaticKeypair.generate())
    node.send_message(b"payload")
    data = bytearray(node.data_to_send())
    data[-1] ^= 1
    with pytest.raises(ChannelError):
        srv.receive_data(bytes(data))


@settings(max_examples=50)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash_the_server_side(data):
    srv = Channel(StaticKeypair.generate(), initiator=False)
    try:
        srv.receive_data(b"SHC1" + data)
    except ChannelError:
        pass


def test_message_codec():
    raw = m.encode(m.Hello(name="alice", endpoints=["198.51.100.1:41641"], udp_port=41641))
    assert m.decode_to_server(raw) == m.Hello(name="alice", endpoints=["198.51.100.1:41641"],
                                              udp_port=41641)
    for bad in [b"not json", b"[]", b'{"type":"hello","v":2,"name":"a"}',
                b'{"type":"hello","v":1,"name":"bad name!"}', b'{"type":"nope","v":1}',
                b'{"type":"request","v":1,"id":-1,"op":"join"}']:
        with pytest.raises(m.BadMessage):
            m.decode_to_server(bad)
    # unknown fields are ignored (forward compatible)
    assert m.decode_to_server(b'{"type":"heartbeat","v":1,"extra":1}') == m.Heartbeat()
    with pytest.raises(m.BadMessage, match="join: password"):
        m.parse_args("join", {"name": "lan"})
