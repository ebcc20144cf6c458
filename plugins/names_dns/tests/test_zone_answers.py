"""Golden DNS queries against the zone rules (no sockets)."""

from __future__ import annotations

import pytest
from dnslib import QTYPE, RCODE, DNSRecord
from shoal_names_dns.answer import Counters, answer
from shoal_names_dns.zone import Member, build

K = {n: (n * 44)[:43] + "=" for n in ("alice", "bob", "bob2", "carol", "Dave")}
MEMBERS = [
    Member("alice", "lan", "100.64.0.2", K["alice"]),
    Member("bob", "lan", "100.64.0.3", K["bob"]),
    Member("alice", "club", "100.64.0.2", K["alice"]),
    Member("carol", "club", "100.64.0.4", K["carol"]),
    # a second node called "bob" in "club", with a lower address than bob's
    Member("bob", "club", "100.64.0.1", K["bob2"]),
    Member("Dave", "Club", "100.64.0.9", K["Dave"]),
    Member("bad name", "lan", "100.64.0.5", "x" * 43 + "="),
]
NAMES = build(MEMBERS)


def test_zone_names_and_duplicate_rule():
    assert NAMES == {
        "alice.lan.shoal": "100.64.0.2", "alice.club.shoal": "100.64.0.2",
        "bob.lan.shoal": "100.64.0.3",
        "bob.club.shoal": "100.64.0.1",          # duplicates: the lowest address holds the name
        "carol.club.shoal": "100.64.0.4", "dave.club.shoal": "100.64.0.9",
        "alice.shoal": "100.64.0.2",             # one node in two networks is still unique
        "carol.shoal": "100.64.0.4", "dave.shoal": "100.64.0.9",
        # "bob.shoal" is not unique: two nodes are called bob
    }


def ask(name: str, qtype: str = "A", counters: Counters | None = None) -> DNSRecord:
    q = DNSRecord.question(name, qtype)
    q.header.id = 4242
    raw = answer(bytes(q.pack()), NAMES, counters)
    assert raw is not None
    r = DNSRecord.parse(raw)
    assert r.header.id == 4242 and r.header.qr == 1
    return r


@pytest.mark.parametrize("name, qtype, rdata", [
    ("alice.lan.shoal", "A", ["100.64.0.2"]),
    ("ALICE.Lan.Shoal.", "A", ["100.64.0.2"]),
    ("bob.club.shoal", "A", ["100.64.0.1"]),
    ("carol.shoal", "A", ["100.64.0.4"]),
    ("carol.shoal", "AAAA", ["fd5e:a10::6440:4"]),
    ("dave.club.shoal", "ANY", ["100.64.0.9", "fd5e:a10::6440:9"]),
])
def test_names_answer_a_and_aaaa(name, qtype, rdata):
    r = ask(name, qtype)
    assert r.header.rcode == RCODE.NOERROR and r.header.aa == 1 and r.header.ra == 0
    assert [str(rr.rdata) for rr in r.rr] == rdata
    assert all(rr.ttl == 5 for rr in r.rr)


def test_missing_names_nxdomain_other_types_nodata():
    c = Counters()
    for name in ("bob.shoal", "eve.lan.shoal", "alice.nowhere.shoal"):
        r = ask(name, counters=c)
        assert r.header.rcode == RCODE.NXDOMAIN and not r.rr
        assert QTYPE[r.auth[0].rtype] == "SOA"
    r = ask("alice.lan.shoal", "MX")
    assert r.header.rcode == RCODE.NOERROR and not r.rr and QTYPE[r.auth[0].rtype] == "SOA"
    assert c.nxdomain == 3


@pytest.mark.parametrize("name", ["example.com", "shoal.example.com", "alice.lan.shoal.evil",
                                  "1.0.64.100.in-addr.arpa"])
def test_other_names_refused_never_forwarded(name):
    c = Counters()
    r = ask(name, counters=c)
    assert r.header.rcode == RCODE.REFUSED and not r.rr and not r.auth and r.header.aa == 0
    assert c.refused == 1


def test_golden_bytes():
    # dig alice.lan.shoal A, id 0x1234, RD set
    query = bytes.fromhex("123401000001000000000000" "05616c696365036c616e0573686f616c00"
                          "00010001")
    expected = bytes.fromhex("123485000001000100000000" "05616c696365036c616e0573686f616c00"
                             "00010001" "c00c000100010000000500046440" "0002")
    assert answer(query, NAMES) == expected


def test_garbage_and_responses_are_dropped_and_counted():
    c = Counters()
    assert answer(b"\x00", NAMES, c) is None
    assert answer(b"\xff" * 40, NAMES, c) is None
    resp = DNSRecord.question("alice.lan.shoal").reply()
    assert answer(bytes(resp.pack()), NAMES, c) is None
    assert c.malformed == 3
