from shoal.overlay_ping import ECHO_REPLY, _checksum, echo_request, parse_reply


def test_echo_request_checksum_is_valid():
    pkt = echo_request(0x1234, 7, b"payload!")
    assert _checksum(pkt) == 0  # a correct ICMP checksum sums to zero


def test_parse_reply_matches_ident():
    icmp = bytearray(echo_request(0x1234, 9, b"x" * 8))
    icmp[0] = ECHO_REPLY
    ip = bytes([0x45]) + bytes(19)
    assert parse_reply(ip + bytes(icmp), 0x1234) == 9
    assert parse_reply(ip + bytes(icmp), 0x9999) is None
    assert parse_reply(b"short", 0x1234) is None
    assert parse_reply(ip + echo_request(0x1234, 9, b"x"), 0x1234) is None  # a request
