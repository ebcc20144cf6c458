"""Fuzzing the relay's frames, both ends (hypothesis; see shoal.testing.fuzz)."""

from __future__ import annotations

import os

from hypothesis import strategies as st

from shoal.testing.fuzz import parser_fuzz
from shoal_transport_relay import protocol as p
from shoal_transport_relay.client import RelayClient

SECRET = os.urandom(32)
KEY = os.urandom(32)
WALL = 1_800_000_000.0
_token = p.make_token(SECRET, KEY, int(WALL) + 600, [p.network_tag("lan")])
VALID = [p.encode_alloc(_token, KEY, int(WALL) + 600, int(WALL * 1000), [p.network_tag("lan")]),
         p.encode_send(p.node_id(KEY), b"sealed"), p.encode_challenge(1, bytes(16)),
         p.encode_alloced(5), p.encode_refused(3), b"SR\x04" + bytes(8) + b"x",
         p.encode_revoke(SECRET, KEY, int(WALL), int(WALL * 1000)),
         p.encode_revoked(SECRET, KEY, int(WALL * 1000))]


def frames() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=700),
        st.builds(lambda v, cut, tail: v[:cut] + tail, st.sampled_from(VALID),
                  st.integers(0, 120), st.binary(max_size=40)),
        st.builds(lambda v, i, b: v[:i] + bytes([b]) + v[i + 1:], st.sampled_from(VALID),
                  st.integers(0, 120), st.integers(0, 255)),
        st.builds(lambda kind, body: b"SR" + bytes([kind]) + body, st.integers(0, 9),
                  st.binary(max_size=700)))


@parser_fuzz(st.lists(frames(), max_size=6), st.booleans())
def test_relay_core_frames(msgs: list[bytes], routable: bool) -> None:
    core = p.RelayCore(SECRET, max_registrations=4)
    core.handle(VALID[0], ("tcp", 1), 0.0, WALL, routable=True)
    for i, msg in enumerate(msgs):
        out = core.handle(msg, ("udp", ("192.0.2.1", i % 3)), float(i), WALL + i,
                          routable=routable)
        for _, reply in out:
            if reply[2] != p.DATA:    # answers never amplify
                assert len(reply) <= max(len(msg), 4)
    assert len(core.by_id) <= 4


@parser_fuzz(st.lists(frames(), max_size=6))
def test_relay_client_frames(msgs: list[bytes]) -> None:
    got: list[bytes] = []
    client = RelayClient(KEY)
    client._receive = lambda data, ep: got.append(data)
    for msg in msgs:
        client.on_message(msg)


def test_decode_alloc_round_trip() -> None:
    a = p.decode_alloc(VALID[0])
    assert a is not None and a.key == KEY and a.tags == {p.network_tag("lan")}
    assert p.decode_alloc(VALID[0][:-1]) is None


def test_regression_alloced_before_any_alloc() -> None:
    """Found by fuzzing: an ALLOCED before the client sent an ALLOC raised AttributeError."""
    client = RelayClient(KEY)
    client.on_message(b"SR\x02")
    client.on_message(p.encode_alloced(5))
    assert client.rtt_ms is None and not client._alloced.is_set()
