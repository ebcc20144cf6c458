"""End to end: two coordination servers on one PostgreSQL, nodes failing over between them.

Topology (namespaces this module creates), one switch; PostgreSQL runs in a
temporary directory and is reached by both servers on its Unix socket::

    srvA 203.0.113.10:7400     srvB 203.0.113.11:7400     (one shared server key)
    alice 203.0.113.21 -> [A, B]   bob 203.0.113.22 -> [B, A]   carol 203.0.113.23 -> [A, B]

All three are in network "lan" (mesh). The test: all online with distinct
addresses, pings between every pair, presence across servers (bob stopped on
B shows offline at alice on A within a few seconds), SIGKILL of server A
(alice and carol log into B within 10 s, pings keep flowing, addresses
unchanged), both servers restarted (every node gets its address back).
"""

from __future__ import annotations

import itertools
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.testing import netlab
from shoal.testing.fleet import NodeProc
from shoal.testing.netlab import Lab, wait_until
from shoal.testing.postgres import PostgresCluster, unavailable

_REASON = netlab.can_run() or unavailable()
pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(_REASON is not None, reason=f"cluster lab: {_REASON}"),
]

SERVERS = {"A": "203.0.113.10", "B": "203.0.113.11"}
NODES = {"alice": ("203.0.113.21", "AB"), "bob": ("203.0.113.22", "BA"),
         "carol": ("203.0.113.23", "AB")}
PW = "secret"
LISTENING = "coordination server listening"


class Cluster:
    def __init__(self, lab: Lab, url: str) -> None:
        self.lab = lab
        self.url = url
        self.ns: dict[str, str] = {}
        self.cfg: dict[str, Path] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.nodes: dict[str, NodeProc] = {}
        self.key = ""

    def start_server(self, name: str) -> None:
        lab = self.lab
        before = lab.log_text(f"srv{name}").count(LISTENING)
        p = lab.spawn(self.ns[name], [netlab.SHOAL, "server", "run", "-c", str(self.cfg[name])],
                      f"srv{name}")
        self.procs[name] = p

        def ready() -> bool:
            if p.poll() is not None:
                raise AssertionError(f"server {name} exited:\n" + lab.log_text(f"srv{name}"))
            return lab.log_text(f"srv{name}").count(LISTENING) > before
        wait_until(ready, 20, what=f"server {name} to listen")

    def status(self, n: str) -> dict[str, Any]:
        node = self.nodes[n]
        if node.proc is not None and node.proc.poll() is not None:
            raise AssertionError(f"{n} exited:\n" + self.lab.log_text(n)[-3000:])
        return self.lab.status(node.ns, node.config)

    def wait_online(self, n: str, timeout: float = 15, server: str | None = None
                    ) -> dict[str, Any]:
        def ok() -> dict[str, Any] | None:
            st = self.status(n)["node"]
            if not (st["online"] and st["virtual_ip"]):
                return None
            if server is not None and not st["server"].startswith(SERVERS[server] + ":"):
                return None
            return st
        st: dict[str, Any] = wait_until(ok, timeout, what=f"{n} online"
                                        + (f" at server {server}" if server else ""))
        return st

    def ping(self, a: str, vip: str, count: int = 1) -> bool:
        r = self.lab.sh(self.nodes[a].ns, f"ping -n -q -c {count} -i 0.2 -W 1 {vip}",
                        check=False, timeout=15)
        return r.returncode == 0


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with PostgresCluster() as pg, Lab("clu") as lab:
        c = Cluster(lab, pg.create_database("shoal"))
        sw = lab.switch()
        for name, ip in SERVERS.items():
            c.ns[name] = lab.ns(f"s{name}")
            lab.attach(sw, c.ns[name], f"{ip}/24")
            c.cfg[name] = lab.write(f"srv{name}.toml", f"""\
state_dir = "{lab.dir / ('srv' + name)}"
listen = "{ip}:7400"
database = "{c.url}"
""")
        out = lab.shoal(c.ns["A"], "server", "init", "-c", str(c.cfg["A"])).stdout
        c.key = out.strip().splitlines()[-1]
        (lab.dir / "srvB").mkdir()
        shutil.copy2(lab.dir / "srvA" / "server.key", lab.dir / "srvB" / "server.key")
        for name in SERVERS:
            c.start_server(name)
        for n, (ip, order) in NODES.items():
            ns = lab.ns(n[:3])
            lab.attach(sw, ns, f"{ip}/24")
            addrs = ", ".join(f'"{SERVERS[s]}:7400"' for s in order)
            cfg = lab.write(f"{n}.toml", f"""\
name = "{n}"
state_dir = "{lab.dir / n}"
plugins = ["udp"]
[server]
addresses = [{addrs}]
public_key = "{c.key}"
[api]
socket = "{lab.dir / n}.sock"
[tunnel]
keepalive = 2
[[networks]]
name = "lan"
password = "{PW}"
create = true
""")
            c.nodes[n] = NodeProc(n, ns, cfg)
        try:
            yield c
        finally:
            pg_log = pg.log_tail()
            if any(p.returncode not in (None, 0, -9) for p in c.procs.values()):
                print(pg_log)


def _loss(output: str) -> int:
    m = re.search(r"(\d+) packets transmitted, (\d+) received", output)
    assert m, f"no ping summary in:\n{output[-500:]}"
    return int(m.group(1)) - int(m.group(2))


def test_two_servers_one_database_failover(cluster: Cluster) -> None:
    c, lab = cluster, cluster.lab
    for n, node in c.nodes.items():
        node.proc = lab.spawn(node.ns, [netlab.SHOAL, "up", "-c", str(node.config)], n)
    first = {"alice": "A", "bob": "B", "carol": "A"}
    # (generous: on a busy machine a node process alone may take seconds to start)
    vips = {n: c.wait_online(n, timeout=40, server=first[n])["virtual_ip"] for n in c.nodes}
    assert len(set(vips.values())) == 3, vips

    # every member is told about the two others, across servers, and pings flow
    for n in c.nodes:
        wait_until(lambda n=n: {p["name"] for p in c.status(n)["peers"] if p["online"]}
                   == set(c.nodes) - {n}, 15, what=f"{n} to see both other members online")
    for a, b in itertools.permutations(c.nodes, 2):
        wait_until(lambda a=a, b=b: c.ping(a, vips[b]), 10, interval=0.05,
                   what=f"{a} -> {b} ping")

    # presence across servers: bob (on B) stops, alice (on A) sees it within a few seconds
    t0 = time.monotonic()
    lab.stop(c.nodes["bob"].proc)  # type: ignore[arg-type]

    def bob_offline() -> bool:
        peers = {p["name"]: p for p in c.status("alice")["peers"]}
        return "bob" in peers and not peers["bob"]["online"] and peers["bob"]["path"] == "none"
    wait_until(bob_offline, 10, what="bob offline at alice (other server)")
    offline_after = time.monotonic() - t0
    bob = c.nodes["bob"]
    bob.proc = lab.spawn(bob.ns, [netlab.SHOAL, "up", "-c", str(bob.config)], "bob")
    assert c.wait_online("bob", timeout=40, server="B")["virtual_ip"] == vips["bob"]
    for a, b in (("alice", "bob"), ("carol", "bob")):
        wait_until(lambda a=a, b=b: c.ping(a, vips[b]), 10, interval=0.05,
                   what=f"{a} -> {b} ping after bob restarted")

    # SIGKILL server A: alice and carol move to B within 10 s; pings keep flowing
    pairs = (("alice", "bob"), ("carol", "bob"), ("alice", "carol"))
    pingers = {(a, b): lab.spawn(c.nodes[a].ns, ["ping", "-n", "-i", "0.2", "-W", "1",
                                                 vips[b]], f"ping-{a}-{b}") for a, b in pairs}
    time.sleep(1)
    before = {n: lab.log_text(n).count(f"logged in to {SERVERS['B']}:7400") for n in NODES}
    t_kill = time.time()
    c.procs["A"].send_signal(signal.SIGKILL)
    c.procs["A"].wait(5)
    # The nodes' own log lines time the move (polling 'shoal status' would add the
    # start-up time of the CLI on a busy machine).
    moved: dict[str, float] = {}
    for n in ("alice", "carol"):
        line = f"logged in to {SERVERS['B']}:7400"
        wait_until(lambda n=n: lab.log_text(n).count(line) > before[n], 15,
                   what=f"{n} to log in to server B")
        stamp = [x for x in lab.log_text(n).splitlines() if line in x][-1][:23]
        moved[n] = time.mktime(time.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S")) \
            + int(stamp[20:23]) / 1000 - t_kill
    assert all(t < 10 for t in moved.values()), f"nodes of A took too long to move: {moved}"
    for n in ("alice", "carol"):
        st = c.wait_online(n, timeout=15, server="B")
        assert st["virtual_ip"] == vips[n], (n, st, vips)
    moved_after = max(moved.values())
    # past the dead server's lease: nobody is shown offline, tunnels stay
    time.sleep(14)
    for n in c.nodes:
        online = {p["name"] for p in c.status(n)["peers"] if p["online"]}
        assert online == set(c.nodes) - {n}, (n, online)
    lost = {}
    for (a, b), p in pingers.items():
        p.send_signal(signal.SIGINT)
        p.wait(5)
        lost[f"{a}->{b}"] = _loss(lab.log_text(f"ping-{a}-{b}"))
    assert all(x <= 2 for x in lost.values()), f"pings lost during the failover: {lost}"

    # both servers restarted: every node gets its same address back
    lab.stop(c.procs["B"])
    for name in SERVERS:
        c.start_server(name)
    for n in c.nodes:
        assert c.wait_online(n, timeout=40)["virtual_ip"] == vips[n]
    print(f"cluster lab: bob offline at alice after {offline_after:.1f}s; "
          f"nodes of A on B after {moved_after:.1f}s; pings lost {lost}")
