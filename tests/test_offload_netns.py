"""End to end: TUN offloads and UDP GSO/GRO between real ``shoal up`` processes.

Topology (namespaces this module creates)::

    bob 198.51.100.2 --veth-- 198.51.100.1 alice 203.0.113.1 --veth-- 203.0.113.2 carol

alice (100.64.0.1) and bob (100.64.0.2) run with offloads (TSO/USO on the TUN,
UDP GSO/GRO); carol (100.64.0.3) runs with ``offload = false`` everywhere, like
a node on an older kernel. Every pair is checked in both directions with
iperf3 (TCP and UDP) and with a file copied over TCP whose SHA-256 is compared
at both ends; UDP super-packets from an application using UDP_SEGMENT are
checked datagram by datagram.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
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
VIP = {"alice": "100.64.0.1", "bob": "100.64.0.2", "carol": "100.64.0.3"}
UNDER = {"alice-bob": "198.51.100.1", "bob": "198.51.100.2",
         "alice-carol": "203.0.113.1", "carol": "203.0.113.2"}

# Receives one TCP connection on HOST:PORT and prints the SHA-256 and length of what came.
TCP_SINK = """\
import hashlib, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); print("READY", flush=True)
c, _ = s.accept(); h = hashlib.sha256(); n = 0
while True:
    b = c.recv(1 << 16)
    if not b:
        break
    h.update(b); n += len(b)
print("GOT", n, h.hexdigest(), flush=True)
"""

# Sends the file at PATH to HOST:PORT over TCP.
TCP_SOURCE = """\
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
with open(sys.argv[3], "rb") as f:
    c.sendfile(f)
c.shutdown(socket.SHUT_WR); c.recv(1); c.close()
"""

# Receives UDP datagrams on HOST:PORT for up to TIMEOUT s; each must be "seq:payload" with
# payload = sha256(seq) repeated; prints how many were good and bad.
UDP_SINK = """\
import hashlib, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind((sys.argv[1], int(sys.argv[2]))); want = int(sys.argv[3]); print("READY", flush=True)
deadline = time.monotonic() + float(sys.argv[4]); good = bad = 0; seen = set()
while len(seen) < want and time.monotonic() < deadline:
    s.settimeout(max(0.01, deadline - time.monotonic()))
    try:
        d = s.recv(65535)
    except socket.timeout:
        break
    seq = int.from_bytes(d[:4], "big")
    body = (hashlib.sha256(d[:4]).digest() * 64)[:len(d) - 4]
    if d[4:] == body and len(d) == 1200:
        seen.add(seq)
    else:
        bad += 1
print("UDP", len(seen), bad, flush=True)
"""

# Sends COUNT datagrams of 1200 bytes to HOST:PORT, ten per sendmsg with UDP_SEGMENT
# (a USO super-packet on the TUN), paced.
UDP_SOURCE = """\
import hashlib, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(17, 103, 1200)   # UDP_SEGMENT
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for base in range(0, count, 10):
    buf = b""
    for seq in range(base, min(base + 10, count)):
        k = seq.to_bytes(4, "big")
        buf += k + (hashlib.sha256(k).digest() * 64)[:1196]
    s.sendto(buf, (host, port))
    time.sleep(0.01)
"""


@dataclass
class Env:
    lab: Lab
    nodes: dict[str, Node]
    scripts: dict[str, Path]
    blob: Path
    blob_sha: str


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    if not shutil.which("iperf3"):
        pytest.skip("iperf3 is not installed")
    with Lab("off") as lab:
        ns = {n: lab.ns(n[0]) for n in VIP}
        lab.link(ns["alice"], f"{UNDER['alice-bob']}/24", ns["bob"], f"{UNDER['bob']}/24")
        lab.link(ns["alice"], f"{UNDER['alice-carol']}/24", ns["carol"], f"{UNDER['carol']}/24")
        cfg = {n: fleet.static_node_config(lab, n, VIP[n], PORT, "[tunnel]\nkeepalive = 2",
                                           offload=n != "carol") for n in VIP}
        keys = {n: lab.shoal(ns[n], "key", "public", "-c", str(cfg[n])).stdout.strip()
                for n in VIP}
        for a, b, ep in (("alice", "bob", UNDER["bob"]), ("bob", "alice", UNDER["alice-bob"]),
                         ("alice", "carol", UNDER["carol"]),
                         ("carol", "alice", UNDER["alice-carol"])):
            fleet.add_static_peer(cfg[a], b, keys[b], f"{ep}:{PORT}", VIP[b])
        nodes = {n: Node(n, ns[n], cfg[n]) for n in VIP}
        for node in nodes.values():
            node.proc = lab.spawn(node.ns, [netlab.SHOAL, "up", "-c", str(node.config)],
                                  node.name)
        for node in nodes.values():
            wait_until(lambda node=node: _alive(lab, node) and node.status(lab), 15,
                       what=f"{node.name}'s local API")
        scripts = {k: lab.write(f"{k}.py", v) for k, v in (
            ("tcp_sink", TCP_SINK), ("tcp_source", TCP_SOURCE), ("udp_sink", UDP_SINK),
            ("udp_source", UDP_SOURCE))}
        data = os.urandom(12 << 20)
        blob = lab.write("blob.bin", "")
        blob.write_bytes(data)
        for a, b in (("alice", "bob"), ("alice", "carol")):
            wait_until(lambda a=a, b=b: _ping(lab, nodes[a].ns, VIP[b]), 20,
                       what=f"{a} to reach {b} over the overlay")
        yield Env(lab, nodes, scripts, blob, hashlib.sha256(data).hexdigest())


def _alive(lab: Lab, node: Node) -> bool:
    assert node.proc is not None
    if node.proc.poll() is not None:
        raise AssertionError(f"{node.name} exited with {node.proc.returncode}:\n"
                             + lab.log_text(node.name)[-3000:])
    return True


def _ping(lab: Lab, ns: str, dst: str) -> bool:
    return lab.sh(ns, f"ping -n -q -c 1 -W 1 {dst}", check=False, timeout=10).returncode == 0


def _ready(lab: Lab, log: str, proc: Any) -> None:
    wait_until(lambda: "READY" in lab.log_text(log) or proc.poll() is not None, 10,
               what=f"{log} ready")


PAIRS = [("alice", "bob"), ("bob", "alice"), ("alice", "carol"), ("carol", "alice")]
IDS = [f"{a}-to-{b}" for a, b in PAIRS]


@pytest.mark.parametrize("src,dst", PAIRS, ids=IDS)
def test_file_copied_over_tcp_arrives_intact(env: Env, src: str, dst: str) -> None:
    lab = env.lab
    log = f"sink-{src}-{dst}"
    sink = lab.spawn(env.nodes[dst].ns, [PY, str(env.scripts["tcp_sink"]), VIP[dst], "7000"],
                     log)
    _ready(lab, log, sink)
    r = lab.sh(env.nodes[src].ns, f"{PY} {env.scripts['tcp_source']} {VIP[dst]} 7000 "
               f"{env.blob}", check=False, timeout=90)
    assert r.returncode == 0, r.stderr
    sink.wait(30)
    line = [x for x in lab.log_text(log).splitlines() if x.startswith("GOT ")]
    assert line, lab.log_text(log)
    _, n, digest = line[0].split()
    assert (int(n), digest) == (env.blob.stat().st_size, env.blob_sha)


@pytest.mark.parametrize("src,dst", PAIRS, ids=IDS)
def test_udp_super_packets_arrive_datagram_by_datagram(env: Env, src: str, dst: str) -> None:
    lab = env.lab
    log = f"usink-{src}-{dst}"
    count = 300
    sink = lab.spawn(env.nodes[dst].ns, [PY, str(env.scripts["udp_sink"]), VIP[dst], "7001",
                                         str(count), "15"], log)
    _ready(lab, log, sink)
    lab.sh(env.nodes[src].ns, f"{PY} {env.scripts['udp_source']} {VIP[dst]} 7001 {count}",
           timeout=30)
    sink.wait(30)
    line = [x for x in lab.log_text(log).splitlines() if x.startswith("UDP ")]
    assert line, lab.log_text(log)
    _, good, bad = line[0].split()
    assert int(bad) == 0
    assert int(good) == count


@pytest.mark.parametrize("proto", ["tcp", "udp"])
@pytest.mark.parametrize("src,dst", [("alice", "bob"), ("alice", "carol")],
                         ids=["offload-offload", "offload-plain"])
def test_iperf3_both_directions(env: Env, src: str, dst: str, proto: str) -> None:
    lab = env.lab
    for reverse in (False, True):
        tag = f"{proto}-{src}-{dst}-{'r' if reverse else 'f'}"
        srv = lab.spawn(env.nodes[dst].ns, ["iperf3", "-s", "-1", "-B", VIP[dst], "-p", "5202"],
                        f"iperf-srv-{tag}")
        wait_until(lambda: lab.sh(env.nodes[dst].ns, "ss -Hltn 'sport = :5202'",
                                  check=False).stdout.strip(), 10, what="iperf3 server")
        extra = "-u -b 100M -l 1300" if proto == "udp" else ""
        r = lab.sh(env.nodes[src].ns, f"iperf3 -c {VIP[dst]} -p 5202 -t 2 -J "
                   f"--connect-timeout 5000 {extra} {'-R' if reverse else ''}", check=False,
                   timeout=40)
        lab.stop(srv, timeout=5)
        res = json.loads(r.stdout)
        assert "error" not in res, res.get("error")
        end = res["end"]
        if proto == "tcp":
            assert end["sum_received"]["bytes"] > 1_000_000
        else:
            assert end["sum"]["packets"] > 100
            assert end["sum"]["lost_packets"] < end["sum"]["packets"]


def test_status_reports_offloads_and_that_they_were_used(env: Env) -> None:
    st = {n: node.status(env.lab)["node"]["offloads"] for n, node in env.nodes.items()}
    assert {"tso4", "tso6"} <= set(st["alice"]["tun"])
    assert st["carol"]["tun"] == [] and st["carol"]["transport"] == []
    assert {"udp_gso", "udp_gro"} <= set(st["bob"]["transport"])
    # TCP from alice's applications came as super-packets; carol's plain segments were
    # merged before alice's TUN
    assert st["alice"]["super_packets_in"] > 0
    assert st["alice"]["coalesced"] > 0 and st["bob"]["coalesced"] > 0
    for node in env.nodes.values():
        drops = node.status(env.lab)["node"]["drops"]
        assert drops["malformed"] == drops["auth"] == drops["spoofed_source"] == 0, drops
