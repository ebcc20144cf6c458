"""Relay messages in WebSocket frames: decoding, and bad frames dropped and counted."""

from hypothesis import given
from hypothesis import strategies as st

from shoal_transport_relay import protocol as p
from shoal_transport_wss.framing import (
    Alloced,
    Data,
    FrameCounters,
    Refused,
    decode_from_relay,
    to_relay,
)

SRC = bytes(range(8))


def test_data_alloced_refused():
    c = FrameCounters()
    assert decode_from_relay(b"SR\x04" + SRC + b"sealed", c) == Data(SRC.hex(), b"sealed")
    assert decode_from_relay(p.encode_alloced(1234) + b"trailing", c) == Alloced(1234)
    assert decode_from_relay(p.encode_refused(p.REFUSE_EXPIRED), c) == Refused(p.REFUSE_EXPIRED)
    assert c == FrameCounters()


def test_bad_frames_dropped_and_counted():
    c = FrameCounters()
    for junk in ("SR\x04text", b"", b"SR", b"XX\x04" + SRC + b"x", b"SR\x04" + SRC,
                 b"SR\x02\x00", b"SR\x05"):
        assert decode_from_relay(junk, c) is None
    assert decode_from_relay(b"SR\x03" + SRC + b"x", c) is None   # SEND is never sent to a node
    assert c == FrameCounters(text=1, malformed=6, unknown=1)


def test_relay_side_drops_text_frames_only():
    c = FrameCounters()
    assert to_relay("hello", c) is None
    assert to_relay(b"anything", c) == b"anything"   # the relay core judges relay messages
    assert c.text == 1


@given(st.one_of(st.binary(max_size=64), st.text(max_size=16)))
def test_decoder_never_raises(message):
    c = FrameCounters()
    out = decode_from_relay(message, c)
    assert out is not None or c.text + c.malformed + c.unknown == 1
