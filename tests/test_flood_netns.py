"""Handshake-initiation flood against a real node (netns, real shoal processes).

mallory sends ~20,000 initiations per second with random contents from spoofed
sources in its own subnet at bob's port, for a bounded time. Meanwhile the
existing alice <-> bob tunnel must keep its loss under 5 % and its added RTT
under 50 ms, and carol, a new peer started during the flood, must get a
tunnel to bob within 2 s of her node being up.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator

import pytest
from shoal import wire
from shoal.testing import fleet, netlab
from shoal.testing.fleet import NodeProc
from shoal.testing.netlab import Lab, wait_until

_REASON = netlab.can_run()
pytestmark = [pytest.mark.netns, pytest.mark.skipif(_REASON is not None, reason=_REASON or "")]

PORT = 41641
A_UNDER, B_UNDER = "198.51.100.1", "198.51.100.2"
C_UNDER, B_C = "192.0.2.1", "192.0.2.2"
M_UNDER, B_M = "203.0.113.1", "203.0.113.2"
A_VIP, B_VIP, C_VIP = "100.64.0.1", "100.64.0.2", "100.64.0.3"

# Sends RATE spoofed initiations per second for SECONDS, then exits. Bounded.
FLOODER = """\
import os, random, socket, struct, sys, time
dst, port, rate, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
prefix = bytes.fromhex(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
pkts = []
for _ in range(4000):
    src = "203.0.113.%d" % random.randint(3, 254)
    payload = prefix + os.urandom(4 + 106 + 32)
    udp = struct.pack("!HHHH", random.randint(1024, 65535), port, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    pkts.append(ip + udp)
sent, start, burst = 0, time.monotonic(), max(1, rate // 100)
while True:
    now = time.monotonic()
    if now - start >= seconds:
        break
    due = int((now - start) * rate)
    while sent < due:
        for _ in range(burst):
            try:
                s.sendto(pkts[sent % len(pkts)], (dst, 0))
            except OSError:
                pass
            sent += 1
    time.sleep(0.005)
print("SENT", sent, "IN", round(time.monotonic() - start, 2), flush=True)
"""


def _node(lab: Lab, name: str, ns: str, vip: str) -> NodeProc:
    return NodeProc(name, ns, fleet.static_node_config(lab, name, vip, PORT,
                                                       "[tunnel]\nkeepalive = 2"))


def _key(lab: Lab, n: NodeProc) -> str:
    return lab.shoal(n.ns, "key", "public", "-c", str(n.config)).stdout.strip()


def _start(lab: Lab, n: NodeProc) -> None:
    n.proc = lab.spawn(n.ns, [netlab.SHOAL, "up", "-c", str(n.config)], n.name)
    wait_until(lambda: n.proc is not None and n.proc.poll() is None and lab.status(n.ns, n.config),
               10, what=f"{n.name}'s local API")


def _ping_stats(out: str) -> tuple[float, float]:
    """(loss %, average RTT ms) from ping's summary."""
    loss = float(re.search(r"([\d.]+)% packet loss", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"= [\d.]+/([\d.]+)/", out)
    return loss, float(m.group(1)) if m else float("inf")


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab("fld") as lab:
        yield lab


def test_initiation_flood_spares_tunnel_and_new_peer(lab: Lab) -> None:
    a, b, c, m = lab.ns("a"), lab.ns("b"), lab.ns("c"), lab.ns("m")
    lab.link(a, f"{A_UNDER}/24", b, f"{B_UNDER}/24")
    lab.link(c, f"{C_UNDER}/24", b, f"{B_C}/24")
    lab.link(m, f"{M_UNDER}/24", b, f"{B_M}/24")
    alice, bob, carol = _node(lab, "alice", a, A_VIP), _node(lab, "bob", b, B_VIP), \
        _node(lab, "carol", c, C_VIP)
    ka, kb, kc = _key(lab, alice), _key(lab, bob), _key(lab, carol)
    fleet.add_static_peer(alice.config, "bob", kb, f"{B_UNDER}:{PORT}", B_VIP)
    fleet.add_static_peer(bob.config, "alice", ka, f"{A_UNDER}:{PORT}", A_VIP)
    fleet.add_static_peer(bob.config, "carol", kc, f"{C_UNDER}:{PORT}", C_VIP)
    fleet.add_static_peer(carol.config, "bob", kb, f"{B_C}:{PORT}", B_VIP)
    _start(lab, alice)
    _start(lab, bob)
    wait_until(lambda: lab.sh(a, f"ping -n -c 1 -W 1 {B_VIP}", check=False).returncode == 0,
               10, what="alice -> bob tunnel")
    base = lab.sh(a, f"ping -n -q -c 100 -i 0.02 -W 1 {B_VIP}", check=False).stdout
    base_loss, base_rtt = _ping_stats(base)

    flooder = lab.write("flood.py", FLOODER)
    fl = lab.spawn(m, [sys.executable, str(flooder), B_M, str(PORT), "20000", "9", wire.INIT_PREFIX.hex()],
                   "flood")
    try:
        time.sleep(1.0)  # the flood is on
        pinger = lab.spawn(a, ["ping", "-n", "-q", "-c", "250", "-i", "0.02", "-W", "1", B_VIP],
                           "ping-under-flood")
        _start(lab, carol)
        t0 = time.monotonic()
        wait_until(lambda: lab.sh(c, f"ping -n -c 1 -W 0.5 {B_VIP}", check=False).returncode == 0,
                   6, interval=0.05, what="carol -> bob tunnel during the flood")
        carol_s = time.monotonic() - t0
        pinger.wait(30)
        fl.wait(30)
    finally:
        if fl.poll() is None:
            lab.stop(fl)
    flood_out = lab.log_text("flood")
    sent = int(re.search(r"SENT (\d+)", flood_out).group(1))  # type: ignore[union-attr]
    loss, rtt = _ping_stats(lab.log_text("ping-under-flood"))
    drops = lab.status(b, bob.config)["node"]["drops"]
    report = (f"flood sent {sent}; bob dropped bad_mac1={drops['bad_mac1']}; "
              f"ping loss {loss}% rtt {rtt:.2f} ms (before: {base_loss}% {base_rtt:.2f} ms); "
              f"carol connected in {carol_s:.2f} s")
    print(report)
    assert sent >= 100_000, report
    assert drops["bad_mac1"] >= sent * 0.5, report  # most of the flood reached bob and was refused
    assert loss < 5.0, report
    assert rtt - base_rtt < 50.0, report
    assert carol_s < 2.0, report
