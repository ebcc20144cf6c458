"""Fuzzing traversal probes (hypothesis; see shoal.testing.fuzz). NAT discovery answers are
STUN, fuzzed with the core parsers (test_fuzz_parsers.py)."""

from __future__ import annotations

import os

from hypothesis import strategies as st

from shoal.identity import StaticKeypair
from shoal.testing.fuzz import parser_fuzz
from shoal_traversal_ice import probe as pr

A, B = StaticKeypair.generate(), StaticKeypair.generate()
AEAD_A = pr.pair_key(A.private, B.public, A.public)
AEAD_B = pr.pair_key(B.private, A.public, B.public)
VALID = pr.seal(AEAD_A, A.public, pr.Probe(pr.PING, os.urandom(12), 0, ("198.51.100.2", 9)))


def _receive(packet: bytes) -> None:
    """What the agent does with a datagram of the probe type."""
    try:
        sender = pr.sender_of(packet)
    except pr.BadProbe:
        return
    assert len(sender) == 32
    try:
        pr.open_(AEAD_B, packet)
    except pr.BadProbe:
        pass


@parser_fuzz(st.one_of(
    st.binary(max_size=200),
    st.builds(lambda cut, tail: VALID[:cut] + tail, st.integers(0, len(VALID)),
              st.binary(max_size=40)),
    st.builds(lambda i, b: VALID[:i] + bytes([b]) + VALID[i + 1:],
              st.integers(0, len(VALID) - 1), st.integers(0, 255))))
def test_probe_from_anyone(packet: bytes) -> None:
    _receive(packet)


@parser_fuzz(st.binary(min_size=pr.BODY.size, max_size=80))
def test_authenticated_probe_bodies(body: bytes) -> None:
    """A peer that holds the pair key sends any body: parsed or refused, never a crash."""
    header = pr.PREFIX + A.public + os.urandom(12)
    _receive(header + AEAD_A.encrypt(header[36:48], body, header))
