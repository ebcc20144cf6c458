"""Peer reconciliation from the server's peers messages, sans-IO (clock passed in)."""

from __future__ import annotations

from shoal.control import messages as m
from shoal.identity import StaticKeypair, decode_public_key
from shoal.peer_reconcile import Gone, PeerReconciler, Up

KEYS = {n: StaticKeypair.generate().public_b64 for n in ("me", "bob", "carol", "static")}
RAW = {n: decode_public_key(k) for n, k in KEYS.items()}


def info(name: str) -> m.PeerInfo:
    return m.PeerInfo(public_key=KEYS[name], name=name, virtual_ip="100.64.0.9",
                      networks=["lan"])


def rec() -> PeerReconciler:
    return PeerReconciler(RAW["me"], [RAW["static"]], grace=15.0)


def never(_key: bytes) -> bool:
    return False


def test_up_and_down():
    r = rec()
    assert r.apply(m.Peers(up=[info("bob"), info("carol")]), 0.0, never) == \
        [Up(RAW["bob"], info("bob")), Up(RAW["carol"], info("carol"))]
    assert set(r.server_peers) == {RAW["bob"], RAW["carol"]}
    assert r.apply(m.Peers(down=[KEYS["bob"]]), 1.0, never) == [Gone(RAW["bob"])]
    assert r.offline[RAW["bob"]].name == "bob" and RAW["bob"] not in r.server_peers
    assert r.apply(m.Peers(down=[KEYS["bob"]]), 2.0, never) == []   # already gone


def test_static_peers_and_self_are_never_touched():
    r = rec()
    assert r.apply(m.Peers(up=[info("static"), info("me")]), 0.0, never) == []
    assert r.apply(m.Peers(full=True, up=[]), 1.0, never) == []


def test_full_snapshot_removes_missing_idle_peers():
    r = rec()
    r.apply(m.Peers(up=[info("bob"), info("carol")]), 0.0, never)
    out = r.apply(m.Peers(full=True, up=[info("carol")]), 5.0, never)
    assert out == [Gone(RAW["bob"]), Up(RAW["carol"], info("carol"))]


def test_busy_tunnel_missing_from_a_snapshot_gets_a_grace_period():
    r = rec()
    r.apply(m.Peers(up=[info("bob")]), 0.0, never)
    busy = {RAW["bob"]}.__contains__
    assert r.apply(m.Peers(full=True, up=[]), 10.0, busy) == []
    assert r.expire(24.9) == []
    # back in time: keeps its tunnel, no longer stale
    assert r.apply(m.Peers(up=[info("bob")]), 20.0, busy) == [Up(RAW["bob"], info("bob"))]
    assert r.expire(100.0) == []
    # missing again and the grace runs out
    r.apply(m.Peers(full=True, up=[]), 200.0, busy)
    assert r.expire(214.9) == []
    assert r.expire(215.0) == [Gone(RAW["bob"])]
    assert RAW["bob"] in r.offline
