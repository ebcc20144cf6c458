"""Fuzzing every core parser reachable before authentication (hypothesis).

Each target feeds arbitrary bytes (and bytes close to valid ones) to a parser
and checks it either parses or fails with its documented error, never with
anything else. ``scripts/fuzz.sh`` runs the same targets for a set time.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import strategies as st

from shoal import cookie, handshake, stun, wire
from shoal.control import messages as m
from shoal.control.channel import PREAMBLE, Channel, ChannelError
from shoal.identity import StaticKeypair
from shoal.server import discovery
from shoal.stun_client import StunClient
from shoal.testing.fuzz import parser_fuzz

SERVER = StaticKeypair.generate()
NODE = StaticKeypair.generate()


def near(valid: bytes) -> st.SearchStrategy[bytes]:
    """Valid bytes with a few changed, cut short or extended."""
    return st.one_of(
        st.binary(max_size=len(valid) + 64),
        st.builds(lambda cut, tail: valid[:cut] + tail,
                  st.integers(0, len(valid)), st.binary(max_size=64)),
        st.builds(lambda i, b: valid[:i] + bytes([b]) + valid[i + 1:],
                  st.integers(0, max(0, len(valid) - 1)), st.integers(0, 255)),
    )


CIPHERS = (wire.CIPHER_CHACHA20_POLY1305,)
VALID_INIT = handshake.Initiator(NODE, SERVER.public, 7, 1, CIPHERS).packet
SRC = ("198.51.100.7", 4000)


@parser_fuzz(near(VALID_INIT))
def test_handshake_initiation(data: bytes) -> None:
    """As the engine takes one: length and mac1 first, then the cookie decision, then DH."""
    try:
        msg = wire.decode_init(data)
    except wire.MalformedPacket:
        return
    guard = cookie.CookieChecker(SERVER.public, clock=lambda: 0.0)
    if not guard.check_mac1(data):
        return
    guard.admit(data, SRC)
    try:
        handshake.respond(SERVER, msg, 9, lambda k, ts: True, CIPHERS)
    except handshake.HandshakeError:
        pass


@parser_fuzz(near(wire.encode_resp(9, 7, bytes(48)) + bytes(wire.MACS_LEN)))
def test_handshake_response(data: bytes) -> None:
    init = handshake.Initiator(NODE, SERVER.public, 7, 1, CIPHERS)
    try:
        msg = wire.decode_resp(data)
    except wire.MalformedPacket:
        return
    try:
        init.process_response(msg)
    except handshake.HandshakeError:
        pass


@parser_fuzz(st.binary(max_size=120))
def test_cookie_reply(data: bytes) -> None:
    try:
        wire.decode_cookie_receiver(data)
    except wire.MalformedPacket:
        return
    sealer = cookie.MacSealer(SERVER.public)
    sealer.seal(wire.encode_init(7, bytes(96)), 0.0)
    sealer.consume_reply(data, 0.0)


@parser_fuzz(near(wire.DATA_PREFIX + bytes(12) + bytes(32)))
def test_data_header(data: bytes) -> None:
    if len(data) >= wire.DATA_HEADER_LEN:
        kind, version, zero, receiver, counter = wire.DATA_HEADER.unpack_from(data)
        assert 0 <= receiver < 1 << 32 and 0 <= counter < 1 << 64


ENDPOINTS = [("203.0.113.10", 3478), ("203.0.113.10", 3479), ("203.0.113.11", 3478),
             ("203.0.113.11", 3479)]


@parser_fuzz(st.one_of(near(stun.encode(stun.binding_request(6))),
                       near(stun.encode(stun.binding_request(0)))), st.integers(0, 3))
def test_discovery_stun_requests(data: bytes, index: int) -> None:
    """The server's STUN endpoints: any datagram is answered correctly or dropped."""
    try:
        reply = discovery.answer(ENDPOINTS, index, data, SRC)
    except stun.StunError:
        return
    assert 0 <= reply.responder < len(ENDPOINTS)
    stun.decode(reply.data)


@parser_fuzz(st.binary(max_size=200))
def test_stun_answers_at_a_client(data: bytes) -> None:
    client = StunClient(lambda d, a: None)
    client.on_datagram(data, SRC)


def _frames(bodies: list[bytes]) -> bytes:
    return b"".join(len(b).to_bytes(2, "big") + b for b in bodies)


@parser_fuzz(st.one_of(st.binary(max_size=512),
                       st.builds(lambda b: PREAMBLE + _frames(b),
                                 st.lists(st.binary(max_size=200), max_size=4))),
             st.integers(1, 64))
def test_control_channel_before_noise(data: bytes, chunk: int) -> None:
    ch = Channel(SERVER, initiator=False)
    try:
        for i in range(0, len(data), chunk):
            assert ch.receive_data(data[i:i + chunk]) == []
    except ChannelError:
        pass


def _open_pair() -> tuple[Channel, Channel]:
    node = Channel(NODE, initiator=True, expected_remote=SERVER.public)
    server = Channel(SERVER, initiator=False)
    for _ in range(3):
        server.receive_data(node.data_to_send())
        node.receive_data(server.data_to_send())
    return node, server


@parser_fuzz(st.lists(st.binary(max_size=300), max_size=4), st.binary(max_size=64))
def test_control_channel_after_noise(plain: list[bytes], raw: bytes) -> None:
    node, server = _open_pair()
    # authenticated frames with arbitrary contents (flags byte included), then raw garbage
    for body in plain:
        node._frame(bytes(node._noise.encrypt(body)))
    try:
        server.receive_data(node.data_to_send() + raw)
    except ChannelError:
        pass


@parser_fuzz(st.one_of(
    st.binary(max_size=400),
    st.builds(lambda t, extra: (b'{"v": 1, "type": "' + t.encode() + b'"' + extra + b"}"),
              st.sampled_from(["hello", "request", "report", "heartbeat", "bye", "welcome",
                               "result", "networks", "peers", "error", "grants", "x"]),
              st.binary(max_size=120))))
def test_control_messages(data: bytes) -> None:
    for decode in (m.decode_to_server, m.decode_to_node):
        try:
            decode(data)
        except m.BadMessage:
            pass


@parser_fuzz(st.sampled_from(sorted(m.ARGS)),
             st.dictionaries(st.text(max_size=12), st.one_of(
                 st.none(), st.booleans(), st.integers(), st.text(max_size=80),
                 st.lists(st.text(max_size=10), max_size=3)), max_size=5))
def test_request_arguments(op: str, args: dict[str, object]) -> None:
    try:
        m.parse_args(op, args)
    except m.BadMessage:
        pass


def test_regression_examples() -> None:
    """Short inputs stay handled (kept as a home for shrunk examples fuzzing finds)."""
    with pytest.raises(stun.StunError):
        discovery.answer(ENDPOINTS, 0, b"", SRC)
    StunClient(lambda d, a: None).on_datagram(os.urandom(3), SRC)
