"""Fuzzing IPX headers, Ethernet framings and the IPXNET bridge (hypothesis;
see shoal.testing.fuzz). DOSBox clients and peer bridges send these
unauthenticated by the IPX layer itself."""

from __future__ import annotations

from hypothesis import strategies as st

from shoal.testing.fuzz import parser_fuzz
from shoal_frames_ipx import framing, ipx_header
from shoal_frames_ipx.ipxnet import ENVELOPE, IpxnetBridge

LOCAL, PEER = bytes([100, 64, 0, 2]), bytes([100, 64, 0, 3])
VALID = [ipx_header.registration_request(), ipx_header.ping_request(b"\x01" * 6),
         ipx_header.ping_reply(b"\x01" * 6, b"\x02" * 6)]


def datagrams() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=120),
        st.builds(lambda v, cut, tail: v[:cut] + tail, st.sampled_from(VALID),
                  st.integers(0, 40), st.binary(max_size=40)),
        st.builds(lambda v, i, b: v[:i] + bytes([b]) + v[i + 1:], st.sampled_from(VALID),
                  st.integers(0, 40), st.integers(0, 255)))


@parser_fuzz(datagrams())
def test_ipx_header(data: bytes) -> None:
    try:
        h, payload = ipx_header.decode(data)
    except ipx_header.MalformedIpx:
        return
    assert h.length <= len(data)


@parser_fuzz(st.binary(max_size=80), datagrams())
def test_ethernet_framings(head: bytes, ipx: bytes) -> None:
    for frame in (head, head[:12] + b"\x81\x37" + ipx, head[:12] + b"\x00\x40\xff\xff" + ipx,
                  head[:12] + b"\x00\x40\xe0\xe0\x03" + ipx):
        if framing.classify(frame) is not None:
            assert framing.ipx_payload(frame) is not None


@parser_fuzz(st.lists(st.tuples(st.booleans(), datagrams(), st.integers(0, 3)), max_size=8))
def test_ipxnet_bridge(events: list[tuple[bool, bytes, int]]) -> None:
    bridge = IpxnetBridge(lambda: [PEER], LOCAL, max_clients=2)
    bridge.from_client(VALID[0], ("127.0.0.1", 5000), 0.0)
    for t, (from_client, data, who) in enumerate(events):
        if from_client:
            bridge.from_client(data, ("127.0.0.1", 5000 + who), float(t))
        else:
            bridge.from_node(ENVELOPE + data if who else data, PEER, float(t))
    assert len(bridge.clients) <= 2
