"""End to end: two real ``shoal up`` processes tunnelling over a veth pair.

Topology (all in namespaces this module creates)::

    alice 198.51.100.1 --veth-- 198.51.100.2 bob 203.0.113.1 --veth-- 203.0.113.2 mallory

alice and bob are static peers (no server), overlay 100.64.0.1 <-> 100.64.0.2.
mallory only sends hostile datagrams to bob's UDP port.

The tests share one lab and run in file order: tunnel up, status, attacks,
restart of one side, clean shutdown.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from shoal import wire
from shoal.testing import fleet, netlab
from shoal.testing.fleet import NodeProc as Node
from shoal.testing.netlab import Lab, wait_until

_REASON = netlab.can_run()
pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(_REASON is not None, reason=f"netns lab: {_REASON}"),
]

PY = sys.executable
PORT = 41641
A_UNDER, B_UNDER = "198.51.100.1", "198.51.100.2"
B_SIDE, M_UNDER = "203.0.113.1", "203.0.113.2"
A_VIP, B_VIP = "100.64.0.1", "100.64.0.2"
DATA_PREFIX = wire.DATA_PREFIX
INIT_PREFIX = wire.INIT_PREFIX
# Counters of the receive path (UDP -> interface). The others (no_route, send_failed)
# count interface-side events, e.g. the kernel's own IPv6 packets on shoal0.
RX_DROP_KEYS = ("malformed", "auth", "replay", "unknown_index", "handshake", "spoofed_source",
                "bad_mac1", "cookie_required", "rate_limited", "backlog_full")

# Sends each hex payload given on the command line as one UDP datagram, from one
# fresh socket (so from an ephemeral source port unknown to the node).
SENDER = """\
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for h in sys.argv[3:]:
    s.sendto(bytes.fromhex(h), (host, port))
s.close()
"""

# Prints "READY", then the UDP payload (hex) of the first IPv4/UDP datagram seen on
# IFACE that is addressed to DST:PORT and whose payload starts with PREFIX and is
# longer than MINLEN bytes; exits 1 after TIMEOUT seconds without one.
SNIFFER = """\
import socket, sys, time
iface, dst, port, prefix, minlen, timeout = (sys.argv[1], socket.inet_aton(sys.argv[2]),
    int(sys.argv[3]), bytes.fromhex(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
s.bind((iface, 0))
print("READY", flush=True)
deadline = time.monotonic() + timeout
while True:
    left = deadline - time.monotonic()
    if left <= 0:
        print("TIMEOUT", flush=True)
        sys.exit(1)
    s.settimeout(left)
    try:
        frame = s.recv(65535)
    except socket.timeout:
        continue
    if len(frame) < 34 or frame[12:14] != b"\\x08\\x00":
        continue
    ip = frame[14:]
    ihl = (ip[0] & 15) * 4
    if ip[9] != 17 or ip[16:20] != dst:
        continue
    udp = ip[ihl:]
    if int.from_bytes(udp[2:4], "big") != port:
        continue
    payload = udp[8:int.from_bytes(udp[4:6], "big")]
    if payload.startswith(prefix) and len(payload) > minlen:
        print("PKT", payload.hex(), flush=True)
        sys.exit(0)
"""


@dataclass
class Env:
    lab: Lab
    alice: Node
    bob: Node
    mallory: str
    b_veth_a: str            # bob's veth towards alice (where the sniffer listens)
    sender: Path
    sniffer: Path


def _node_config(lab: Lab, name: str, vip: str) -> Path:
    return fleet.static_node_config(lab, name, vip, PORT, "[tunnel]\nkeepalive = 2")


def _start(lab: Lab, node: Node) -> None:
    node.proc = lab.spawn(node.ns, [netlab.SHOAL, "up", "-c", str(node.config)], node.name)
    wait_until(lambda: _alive(lab, node) and lab.status(node.ns, node.config), 10,
               what=f"{node.name}'s local API")


def _alive(lab: Lab, node: Node) -> bool:
    assert node.proc is not None
    if node.proc.poll() is not None:
        raise AssertionError(f"{node.name} exited with {node.proc.returncode}:\n"
                             + lab.log_text(node.name)[-3000:])
    return True


def _ping(lab: Lab, ns: str, dst: str, count: int = 3) -> bool:
    r = lab.sh(ns, f"ping -n -q -c {count} -i 0.2 -W 1 {dst}", check=False, timeout=15)
    return r.returncode == 0


def _peer(st: dict[str, Any], name: str) -> dict[str, Any]:
    (p,) = [p for p in st["peers"] if p["name"] == name]
    return p


def _drops(lab: Lab, node: Node) -> dict[str, int]:
    d: dict[str, int] = lab.status(node.ns, node.config)["node"]["drops"]
    return d


def _send(env: Env, ns: str, host: str, *payloads: bytes) -> None:
    argv = [PY, str(env.sender), host, str(PORT), *(p.hex() for p in payloads)]
    env.lab.sh(ns, shlex.join(argv), timeout=15)


def _capture(env: Env, prefix: bytes, minlen: int, traffic: Any, timeout: float = 8) -> bytes:
    """Sniff bob's veth for a datagram to bob's port; ``traffic()`` makes it happen."""
    lab = env.lab
    log = f"sniff-{time.monotonic_ns()}"
    p = lab.spawn(env.bob.ns, [PY, str(env.sniffer), env.b_veth_a, B_UNDER, str(PORT),
                               prefix.hex(), str(minlen), str(timeout)], log)
    wait_until(lambda: "READY" in lab.log_text(log) or p.poll() is not None, 5,
               what="sniffer ready")
    traffic()
    p.wait(timeout + 5)
    for line in lab.log_text(log).splitlines():
        if line.startswith("PKT "):
            return bytes.fromhex(line[4:])
    raise AssertionError(f"no matching datagram captured:\n{lab.log_text(log)}")


def _expect_drop(env: Env, counter: str, n: int, attack: Any) -> dict[str, int]:
    """Run ``attack``; bob's ``counter`` must grow by exactly ``n``, the other receive-path
    counters not at all."""
    before = _drops(env.lab, env.bob)
    attack()
    after = wait_until(
        lambda: (d := _drops(env.lab, env.bob))[counter] >= before[counter] + n and d,
        5, what=f"bob's drops.{counter} to grow by {n}")
    assert after[counter] == before[counter] + n, (counter, before, after)
    others = {k: (before[k], after[k]) for k in RX_DROP_KEYS
              if k != counter and before[k] != after[k]}
    assert not others, f"unexpected drop counters moved: {others}"
    return after


def _tunnel_ok(env: Env) -> None:
    assert _ping(env.lab, env.alice.ns, B_VIP), "alice -> bob ping failed"
    assert _ping(env.lab, env.bob.ns, A_VIP), "bob -> alice ping failed"


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with Lab("tun") as lab:
        a, b, m = lab.ns("a"), lab.ns("b"), lab.ns("m")
        _, b_veth_a = lab.link(a, f"{A_UNDER}/24", b, f"{B_UNDER}/24")
        lab.link(b, f"{B_SIDE}/24", m, f"{M_UNDER}/24")
        alice = Node("alice", a, _node_config(lab, "alice", A_VIP))
        bob = Node("bob", b, _node_config(lab, "bob", B_VIP))
        ka = lab.shoal(a, "key", "public", "-c", str(alice.config)).stdout.strip()
        kb = lab.shoal(b, "key", "public", "-c", str(bob.config)).stdout.strip()
        assert ka and kb and ka != kb
        fleet.add_static_peer(alice.config, "bob", kb, f"{B_UNDER}:{PORT}", B_VIP)
        fleet.add_static_peer(bob.config, "alice", ka, f"{A_UNDER}:{PORT}", A_VIP)
        e = Env(lab, alice, bob, m, b_veth_a, lab.write("send.py", SENDER),
                lab.write("sniff.py", SNIFFER))
        _start(lab, alice)
        _start(lab, bob)
        try:
            yield e
        finally:
            if os.environ.get("SHOAL_TEST_KEEP_LOGS"):
                for n in ("alice", "bob"):
                    sys.stderr.write(f"--- {n}.log\n{lab.log_text(n)}\n")


# --------------------------------------------------------------------------- tests
def test_ping_both_ways(env: Env) -> None:
    lab = env.lab
    # the first ping may wait for the handshake
    wait_until(lambda: _ping(lab, env.alice.ns, B_VIP, 1), 10, what="alice -> bob ping")
    _tunnel_ok(env)


def test_status_shows_direct_peer(env: Env) -> None:
    lab = env.lab
    for me, peer, ep in ((env.alice, "bob", f"{B_UNDER}:{PORT}"),
                         (env.bob, "alice", f"{A_UNDER}:{PORT}")):
        st0 = lab.status(me.ns, me.config)
        p0 = _peer(st0, peer)
        assert p0["online"] is True, p0
        assert p0["path"] == "direct", p0
        assert p0["endpoint"] == ep, p0
        assert st0["node"]["virtual_ip"] == (A_VIP if me is env.alice else B_VIP)
        assert _ping(lab, me.ns, B_VIP if me is env.alice else A_VIP)
        p1 = _peer(lab.status(me.ns, me.config), peer)
        assert p1["rx_bytes"] > p0["rx_bytes"], (p0, p1)
        assert p1["tx_bytes"] > p0["tx_bytes"], (p0, p1)
        assert p1["rx_packets"] > p0["rx_packets"] and p1["tx_packets"] > p0["tx_packets"]
        assert p1["handshakes"] >= 1
        assert p1["online"] and p1["path"] == "direct" and p1["endpoint"] == ep


def test_garbage_and_truncated_packets_are_malformed(env: Env) -> None:
    m = env.mallory
    garbage = b"\xff" + os.urandom(63)          # unknown type byte
    _expect_drop(env, "malformed", 1, lambda: _send(env, m, B_SIDE, garbage))
    short_data = DATA_PREFIX + os.urandom(10)   # data header, far too short
    _expect_drop(env, "malformed", 1, lambda: _send(env, m, B_SIDE, short_data))
    short_init = INIT_PREFIX + os.urandom(20)   # truncated handshake initiation
    _expect_drop(env, "malformed", 1, lambda: _send(env, m, B_SIDE, short_init))
    # the same from alice's namespace through a socket other than alice's node
    tiny = [b"", b"\x04", DATA_PREFIX, os.urandom(3)]
    _expect_drop(env, "malformed", len(tiny), lambda: _send(env, env.alice.ns, B_UNDER, *tiny))
    _tunnel_ok(env)


def test_unknown_index_and_forged_initiation(env: Env) -> None:
    m = env.mallory
    forged = DATA_PREFIX + os.urandom(4) + (7).to_bytes(8, "little") + os.urandom(40)
    _expect_drop(env, "unknown_index", 1, lambda: _send(env, m, B_SIDE, forged))
    init = INIT_PREFIX + os.urandom(4) + os.urandom(138)   # full length, no valid mac1
    _expect_drop(env, "bad_mac1", 1, lambda: _send(env, m, B_SIDE, init))
    _tunnel_ok(env)


def test_replayed_and_tampered_data_packets(env: Env) -> None:
    lab = env.lab
    pkt = _capture(env, DATA_PREFIX, 32,
                   lambda: _ping(lab, env.alice.ns, B_VIP, 5))
    assert len(pkt) > 32 and pkt[:4] == DATA_PREFIX
    ep_before = _peer(lab.status(env.bob.ns, env.bob.config), "alice")["endpoint"]
    assert ep_before == f"{A_UNDER}:{PORT}"

    # replayed verbatim, from another address (mallory) and from another port (alice's ns)
    _expect_drop(env, "replay", 1, lambda: _send(env, env.mallory, B_SIDE, pkt))
    _expect_drop(env, "replay", 1, lambda: _send(env, env.alice.ns, B_UNDER, pkt))
    _expect_drop(env, "replay", 3, lambda: _send(env, env.mallory, B_SIDE, pkt, pkt, pkt))
    st = lab.status(env.bob.ns, env.bob.config)
    assert _peer(st, "alice")["endpoint"] == ep_before, "a replayed packet moved the endpoint"

    # one bit flipped in the ciphertext, then one in the authenticated header's counter
    for pos in (len(pkt) - 20, 16, 8):
        bad = bytearray(pkt)
        bad[pos] ^= 0x01
        _expect_drop(env, "auth", 1, lambda b=bytes(bad): _send(env, env.mallory, B_SIDE, b))
    st = lab.status(env.bob.ns, env.bob.config)
    assert _peer(st, "alice")["endpoint"] == ep_before, "a forged packet moved the endpoint"
    _tunnel_ok(env)
    p = _peer(lab.status(env.bob.ns, env.bob.config), "alice")
    assert p["online"] and p["path"] == "direct" and p["endpoint"] == ep_before


def test_sigkill_and_restart_reestablishes(env: Env) -> None:
    lab, alice, bob = env.lab, env.alice, env.bob
    hs_before = _peer(lab.status(bob.ns, bob.config), "alice")["handshakes"]
    bob_proc = bob.proc
    assert alice.proc is not None
    alice.proc.send_signal(signal.SIGKILL)
    alice.proc.wait(5)
    # the TUN device is not persistent: it goes with the process
    wait_until(lambda: lab.sh(alice.ns, "ip link show shoal0", check=False).returncode != 0, 5,
               what="alice's shoal0 to disappear after SIGKILL")

    # capture alice's first handshake initiation after the restart, for a replay below
    took: list[float] = []

    def restart() -> None:
        t0 = time.monotonic()
        _start(lab, alice)
        wait_until(lambda: _ping(lab, alice.ns, B_VIP, 1), 10, what="ping after restart")
        took.append(time.monotonic() - t0)

    init = _capture(env, INIT_PREFIX, 100, restart, timeout=12)
    assert took and took[0] < 10, f"tunnel took {took} s to come back after a restart"
    assert bob.proc is bob_proc and bob.proc is not None and bob.proc.poll() is None
    _tunnel_ok(env)
    p = wait_until(lambda: (q := _peer(lab.status(bob.ns, bob.config), "alice"))["online"] and q,
                   10, what="bob to see alice online")
    assert p["handshakes"] > hs_before
    assert p["path"] == "direct" and p["endpoint"] == f"{A_UNDER}:{PORT}"
    pa = _peer(lab.status(alice.ns, alice.config), "bob")
    assert pa["online"] and pa["path"] == "direct"

    # a replayed initiation (stale timestamp) is rejected and changes nothing
    _expect_drop(env, "handshake", 1, lambda: _send(env, env.mallory, B_SIDE, init))
    assert _peer(lab.status(bob.ns, bob.config), "alice")["endpoint"] == f"{A_UNDER}:{PORT}"
    _tunnel_ok(env)


def test_sigterm_exits_cleanly(env: Env) -> None:
    lab = env.lab
    for node in (env.alice, env.bob):
        assert node.proc is not None and node.proc.poll() is None
        assert lab.sh(node.ns, "ip link show shoal0", check=False).returncode == 0
        rc = lab.stop(node.proc, timeout=10)
        assert rc == 0, f"{node.name} exited with {rc}:\n{lab.log_text(node.name)[-3000:]}"
        assert lab.sh(node.ns, "ip link show shoal0", check=False).returncode != 0, \
            f"{node.name}'s shoal0 still exists after a clean shutdown"
        assert not Path(f"{lab.dir / node.name}.sock").exists(), "API socket left behind"
