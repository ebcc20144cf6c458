"""MAC1/MAC2 and cookie replies (cookie.py), with an injected clock."""

from hypothesis import given, settings
from hypothesis import strategies as st
from shoal import cookie, wire
from shoal.cookie import CookieChecker, MacSealer, Verdict
from shoal.identity import StaticKeypair


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


RESPONDER = StaticKeypair.generate()
ADDR = ("198.51.100.7", 41641)
BODY = wire.encode_init(0x11223344, b"n" * 106)


def checker(clock: Clock, **kw) -> CookieChecker:
    return CookieChecker(RESPONDER.public, clock, **kw)


def test_mac1_made_for_the_responder_passes_and_any_change_fails():
    c = checker(Clock())
    pkt = MacSealer(RESPONDER.public).seal(BODY, 0.0)
    assert len(pkt) == len(BODY) + cookie.MACS_LEN
    assert c.check_mac1(pkt)
    for i in (0, 10, len(BODY) - 1, len(BODY)):
        bad = bytearray(pkt)
        bad[i] ^= 1
        assert not c.check_mac1(bytes(bad))
    other = MacSealer(StaticKeypair.generate().public).seal(BODY, 0.0)
    assert not c.check_mac1(other)
    assert c.stats.bad_mac1 == 5


def test_not_under_load_accepts_without_mac2():
    c = checker(Clock())
    pkt = MacSealer(RESPONDER.public).seal(BODY, 0.0)
    assert c.admit(pkt, ADDR) is Verdict.ACCEPT


def test_under_load_cookie_round_trip():
    clock = Clock()
    c = checker(clock)
    c.note_load(True)
    sealer = MacSealer(RESPONDER.public)
    first = sealer.seal(BODY, clock.t)
    assert c.admit(first, ADDR) is Verdict.COOKIE
    reply = c.cookie_reply(first, 0x11223344, ADDR)
    assert len(reply) == wire.COOKIE_REPLY_LEN
    assert wire.decode_cookie_receiver(reply) == 0x11223344
    assert sealer.consume_reply(reply, clock.t)
    second = sealer.seal(BODY, clock.t)
    assert c.check_mac1(second)
    assert c.admit(second, ADDR) is Verdict.ACCEPT
    # the cookie is bound to the source address
    assert c.admit(second, ("198.51.100.8", 41641)) is Verdict.COOKIE


def test_cookie_reply_for_another_message_does_not_open():
    clock = Clock()
    c = checker(clock)
    sealer = MacSealer(RESPONDER.public)
    first = sealer.seal(BODY, clock.t)
    reply = c.cookie_reply(first, 1, ADDR)
    sealer.seal(BODY + b"x", clock.t)  # a newer initiation went out meanwhile
    assert not sealer.consume_reply(reply, clock.t)
    forged = bytearray(c.cookie_reply(sealer.seal(BODY, clock.t), 1, ADDR))
    forged[-1] ^= 1
    assert not sealer.consume_reply(bytes(forged), clock.t)
    assert not sealer.has_cookie


def test_cookie_expires_and_secret_rotates():
    clock = Clock()
    c = checker(clock)
    c.note_load(True)
    sealer = MacSealer(RESPONDER.public)
    pkt = sealer.seal(BODY, clock.t)
    sealer.consume_reply(c.cookie_reply(pkt, 1, ADDR), clock.t)
    clock.t += cookie.SECRET_LIFETIME + 1
    c.note_load(True)
    # the responder's secret rotated: the old cookie no longer makes a valid mac2
    assert c.admit(sealer.seal(BODY, clock.t), ADDR) is Verdict.COOKIE


def test_load_holds_for_a_second_then_ends():
    clock = Clock()
    c = checker(clock)
    c.note_load(True)
    assert c.under_load
    clock.t += 0.5
    c.note_load(False)
    assert c.under_load
    clock.t += 0.6
    assert not c.under_load


def test_per_source_bucket_limits_one_host_not_others():
    clock = Clock()
    c = checker(clock, rate=10.0, burst=5.0)
    pkt = MacSealer(RESPONDER.public).seal(BODY, 0.0)
    verdicts = [c.admit(pkt, ("198.51.100.9", p)) for p in range(8)]  # ports vary, host same
    assert verdicts.count(Verdict.ACCEPT) == 5
    assert verdicts[-1] is Verdict.RATE_LIMITED
    assert c.admit(pkt, ("198.51.100.10", 1)) is Verdict.ACCEPT
    clock.t += 0.2   # two tokens back
    assert c.admit(pkt, ("198.51.100.9", 1)) is Verdict.ACCEPT


def test_source_table_is_bounded():
    c = checker(Clock(), max_sources=100)
    pkt = MacSealer(RESPONDER.public).seal(BODY, 0.0)
    for i in range(1000):
        c.admit(pkt, (f"203.0.113.{i % 250}", i))
        c.admit(pkt, (f"198.51.100.{i % 250}", i))
    assert c.sources_tracked() <= 100


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_random_packets_never_pass_mac1_or_crash(data):
    c = checker(Clock())
    assert not c.check_mac1(data)
    sealer = MacSealer(RESPONDER.public)
    sealer.seal(BODY, 0.0)
    assert not sealer.consume_reply(data, 0.0)
