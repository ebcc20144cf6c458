"""End to end: a real coordination server (``shoal server run``) and real nodes.

Topology (all in namespaces this module creates), one switch::

    server  203.0.113.10 + .11  (control TCP :7400, discovery UDP :3478/:3479)
    alice   203.0.113.21   bob 203.0.113.22   carol 203.0.113.23   (network "lan", mesh)
    mallory 203.0.113.24   dave 203.0.113.25   (no network at start)
    eve     203.0.113.26   (pins another server key)
    x       203.0.113.30   (only sends garbage to the control port)

Every node gets its virtual IP from the server (100.64.0.0/10). The tests share
one lab and run in file order: mesh, wrong password, approval, hub-and-spoke,
wrong server key, garbage on the control port, server crash and restart, a
node that stops, re-login after broken control connections.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from shoal.testing import netlab
from shoal.testing.fleet import NodeProc as Node
from shoal.testing.netlab import Lab, wait_until

_REASON = netlab.can_run()
pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(_REASON is not None, reason=f"netns lab: {_REASON}"),
]

PY = sys.executable
SERVER_IP, SERVER_IP2 = "203.0.113.10", "203.0.113.11"
CONTROL = f"{SERVER_IP}:7400"
POOL = ipaddress.IPv4Network("100.64.0.0/10")
LAN_PW = "secret"
UNDERLAY = {"alice": "203.0.113.21", "bob": "203.0.113.22", "carol": "203.0.113.23",
            "mallory": "203.0.113.24", "dave": "203.0.113.25", "eve": "203.0.113.26"}
MESH = ("alice", "bob", "carol")          # members of "lan" from their config
LISTENING = "coordination server listening"

# Connects to the control port several ways that are not a node and prints, per
# case, "<case> closed|open <bytes received>". Needs the venv (shoal, noise).
ATTACKER = """\
import os, socket, sys
from shoal.control.channel import Channel
from shoal.identity import StaticKeypair

host, port = sys.argv[1], int(sys.argv[2])


def drain(s, limit=3.0):
    s.settimeout(limit)
    got = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                return got, True
            got += d
    except socket.timeout:
        return got, False
    except ConnectionResetError:
        return got, True
    finally:
        s.close()


def report(name, got, closed):
    print(name, "closed" if closed else "open", len(got), flush=True)


def send(name, payload, half_close=False):
    s = socket.create_connection((host, port), timeout=5)
    s.sendall(payload)
    if half_close:
        s.shutdown(socket.SHUT_WR)
    report(name, *drain(s))


def frame(body):
    return len(body).to_bytes(2, "big") + body


send("random", os.urandom(4096))
send("random-after-preamble-then-eof", b"SHC1" + os.urandom(4096), half_close=True)
send("short-handshake-frame", b"SHC1" + frame(os.urandom(10)))
send("bad-handshake-frame-lengths", b"SHC1" + frame(b"") + frame(os.urandom(31)))
send("http", b"GET / HTTP/1.1\\r\\nHost: 203.0.113.10:7400\\r\\nConnection: close\\r\\n\\r\\n")
send("tls-hello", bytes.fromhex("16030100c4010000c00303") + os.urandom(190))
send("oversized-frame-then-eof", b"SHC1\\xff\\xff" + os.urandom(100), half_close=True)
send("empty-then-eof", b"", half_close=True)

# half a handshake: message 1, read the server's message 2, then hang up
ch = Channel(StaticKeypair.generate(), initiator=True)
s = socket.create_connection((host, port), timeout=5)
s.sendall(ch.data_to_send())
s.settimeout(3)
msg2 = s.recv(65536)
s.close()
print("half-handshake", "reply", len(msg2), flush=True)

# a full handshake with an unknown key, then a frame that does not authenticate
for name, tail in (("handshake-then-garbage", frame(os.urandom(64))),
                   ("handshake-then-bad-message", None)):
    ch = Channel(StaticKeypair.generate(), initiator=True)
    s = socket.create_connection((host, port), timeout=5)
    s.sendall(ch.data_to_send())
    s.settimeout(3)
    buf = b""
    while True:
        buf += s.recv(65536)
        if len(buf) >= 2 and len(buf) >= 2 + int.from_bytes(buf[:2], "big"):
            break
    ch.receive_data(buf)
    out = ch.data_to_send()            # message 3
    if tail is None:                   # authenticated, but not a hello (not even JSON)
        ch.send_message(os.urandom(200))
        tail = ch.data_to_send()
    s.sendall(out + tail)
    report(name, *drain(s))

# a burst of short connections with garbage
closed = 0
for i in range(40):
    s = socket.create_connection((host, port), timeout=5)
    s.sendall(os.urandom(1 + i * 7))
    closed += drain(s)[1]
print("burst", closed, flush=True)
"""


@dataclass
class Env:
    lab: Lab
    srv_ns: str
    server_cfg: Path
    server_key: str
    attacker_ns: str
    eve_ns: str
    nodes: dict[str, Node]
    server: subprocess.Popen[bytes] | None = None
    vips: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]


# --------------------------------------------------------------------------- helpers
def _node_config(lab: Lab, name: str, server_key: str, lan: bool) -> Path:
    text = f"""\
name = "{name}"
state_dir = "{lab.dir / name}"
plugins = ["udp"]
[server]
address = "{CONTROL}"
public_key = "{server_key}"
[api]
socket = "{lab.dir / name}.sock"
[tunnel]
keepalive = 2
"""
    if lan:
        text += f"""
[[networks]]
name = "lan"
password = "{LAN_PW}"
create = true
"""
    return lab.write(f"{name}.toml", text)


def _start_server(env: Env) -> None:
    lab = env.lab
    before = lab.log_text("server").count(LISTENING)
    env.server = lab.spawn(env.srv_ns, [netlab.SHOAL, "server", "run", "-c", str(env.server_cfg)],
                           "server")
    p = env.server

    def ready() -> bool:
        if p.poll() is not None:
            raise AssertionError(f"server exited with {p.returncode}:\n"
                                 + lab.log_text("server")[-3000:])
        return lab.log_text("server").count(LISTENING) > before

    wait_until(ready, 10, what="the server to listen")


def _spawn_node(lab: Lab, node: Node) -> None:
    node.proc = lab.spawn(node.ns, [netlab.SHOAL, "up", "-c", str(node.config)], node.name)


def _alive(lab: Lab, node: Node) -> bool:
    assert node.proc is not None
    if node.proc.poll() is not None:
        raise AssertionError(f"{node.name} exited with {node.proc.returncode}:\n"
                             + lab.log_text(node.name)[-3000:])
    return True


def _status(env: Env, node: Node) -> dict[str, Any]:
    return env.lab.status(node.ns, node.config)


def _wait_online(env: Env, node: Node, timeout: float = 10) -> dict[str, Any]:
    def online() -> dict[str, Any] | None:
        _alive(env.lab, node)
        st = _status(env, node)
        return st if st["node"]["online"] and st["node"]["virtual_ip"] else None

    st: dict[str, Any] = wait_until(online, timeout, what=f"{node.name} to log in")
    return st


def _net(env: Env, node: Node, *args: str, check: bool = True
         ) -> subprocess.CompletedProcess[str]:
    return env.lab.shoal(node.ns, "network", *args, "-c", str(node.config), check=check)


def _net_json(env: Env, node: Node, *args: str) -> Any:
    return json.loads(_net(env, node, *args, "--json").stdout)


def _ping(lab: Lab, ns: str, dst: str, count: int = 3) -> bool:
    r = lab.sh(ns, f"ping -n -q -c {count} -i 0.2 -W 1 {dst}", check=False, timeout=15)
    return r.returncode == 0


def _wait_ping(env: Env, src: str, dst: str, timeout: float = 10) -> None:
    wait_until(lambda: _ping(env.lab, env[src].ns, env.vips[dst], 1), timeout, interval=0.05,
               what=f"{src} -> {dst} ping over the overlay")


def _ping_loss(output: str) -> int:
    """Packets lost, from the summary line of an (interrupted) ping."""
    m = re.search(r"(\d+) packets transmitted, (\d+) received", output)
    assert m, f"no ping summary in:\n{output[-500:]}"
    return int(m.group(1)) - int(m.group(2))


def _peers(st: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in st["peers"]}


def _peer_names(env: Env, node: str) -> set[str]:
    """Peers the node lists (told by the server; online or not yet)."""
    return set(_peers(_status(env, env[node])))


def _one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0, f"expected a failure, got rc 0: {r.stdout}"
    assert len(lines) == 1, f"expected one line on stderr, got:\n{r.stderr}"
    return lines[0]


# --------------------------------------------------------------------------- fixture
@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with Lab("srv") as lab:
        sw = lab.switch()
        srv = lab.ns("srv")
        iface = lab.attach(sw, srv, f"{SERVER_IP}/24")
        lab.sh(srv, f"ip addr add {SERVER_IP2}/24 dev {iface}")
        nss = {}
        for name, addr in UNDERLAY.items():
            nss[name] = lab.ns(name[:3])
            lab.attach(sw, nss[name], f"{addr}/24")
        attacker = lab.ns("x")
        lab.attach(sw, attacker, "203.0.113.30/24")

        server_cfg = lab.write("server.toml", f"""\
state_dir = "{lab.dir / 'server'}"
listen = "{CONTROL}"
discovery = ["{SERVER_IP}:3478", "{SERVER_IP}:3479", "{SERVER_IP2}:3478", "{SERVER_IP2}:3479"]
""")
        out = lab.shoal(srv, "server", "init", "-c", str(server_cfg)).stdout
        key = out.strip().splitlines()[-1]
        assert len(key) == 44, out

        nodes = {n: Node(n, nss[n], _node_config(lab, n, key, n in MESH))
                 for n in UNDERLAY if n != "eve"}
        e = Env(lab, srv, server_cfg, key, attacker, nss["eve"], nodes)
        _start_server(e)
        for node in nodes.values():
            _spawn_node(lab, node)
        for node in nodes.values():
            e.vips[node.name] = _wait_online(e, node)["node"]["virtual_ip"]
        try:
            yield e
        finally:
            if os.environ.get("SHOAL_TEST_KEEP_LOGS"):
                for n in ("server", *nodes, "eve"):
                    sys.stderr.write(f"--- {n}.log\n{lab.log_text(n)}\n")


def _scenario_networks(env: Env) -> None:
    """The networks earlier tests build step by step ("club": alice and dave, by
    approval; "star": hub carol, spokes mallory and dave), made here at once when a
    test runs without them, so every test stands alone."""
    alice = env["alice"]
    nets = {n["name"] for n in _net_json(env, alice, "list")}
    if "club" not in nets:
        _net(env, alice, "create", "club", "--password", "pw-club", "--mode", "approval")
        _net(env, env["dave"], "join", "club", "--password", "pw-club", check=False)  # pending
        _net(env, alice, "approve", "club", "dave")
    if "star" not in nets:
        _net(env, alice, "create", "star", "--password", "pw-star", "--type", "hub-and-spoke")
        for n in ("carol", "mallory", "dave"):
            _net(env, env[n], "join", "star", "--password", "pw-star")
        _net(env, alice, "set", "star", "--hub", "carol")
    _wait_ping(env, "dave", "alice")
    _wait_ping(env, "mallory", "carol")


# --------------------------------------------------------------------------- tests
def test_mesh_distinct_addresses_and_ping_each_pair(env: Env) -> None:
    vips = env.vips
    assert len(set(vips.values())) == len(vips), f"addresses are not distinct: {vips}"
    for name, vip in vips.items():
        assert ipaddress.IPv4Address(vip) in POOL, (name, vip)
    lab = env.lab
    for n in MESH:  # the interface carries the address the server gave
        r = lab.sh(env[n].ns, "ip -4 -o addr show dev shoal0")
        assert f"{vips[n]}/10" in r.stdout, r.stdout
    # every member of "lan" is told about the two others (the network may still be forming)
    for n in MESH:
        wait_until(lambda n=n: _peer_names(env, n) >= set(MESH) - {n}, 10,
                   what=f"{n} to be told about the other members of lan")
    for a, b in itertools.permutations(MESH, 2):
        _wait_ping(env, a, b)
    for a, b in itertools.permutations(MESH, 2):
        assert _ping(lab, env[a].ns, vips[b], 2), f"{a} -> {b} ping failed"
    for n in MESH:
        st = _status(env, env[n])
        peers = _peers(st)
        assert set(peers) == set(MESH) - {n}, peers
        for other, p in peers.items():
            assert p["online"] and p["path"] == "direct", p
            assert p["virtual_ip"] == vips[other] and p["networks"] == ["lan"], p
            assert p["endpoint"] == f"{UNDERLAY[other]}:41641", p
        (lan,) = st["networks"]
        assert lan["name"] == "lan" and lan["type"] == "mesh" and lan["members"] == 3, lan
    roles = {n: _status(env, env[n])["networks"][0]["role"] for n in MESH}
    assert sorted(roles.values()) == ["member", "member", "owner"], roles
    members = _net_json(env, env["alice"], "members", "lan")
    assert {x["name"]: x["virtual_ip"] for x in members} == {n: vips[n] for n in MESH}
    assert all(x["online"] for x in members), members


def test_wrong_password_is_refused(env: Env) -> None:
    lab, mallory = env.lab, env["mallory"]
    r = _net(env, mallory, "join", "lan", "--password", "wrong", check=False)
    line = _one_line_error(r)
    assert "wrong password" in line and "lan" in line, line
    st = _status(env, mallory)
    assert st["peers"] == [], st["peers"]
    assert st["networks"] == [], st["networks"]
    assert _net_json(env, mallory, "list") == []
    for n in MESH:
        assert not _ping(lab, mallory.ns, env.vips[n], 2), f"mallory reached {n}"
        assert "mallory" not in _peers(_status(env, env[n]))
    owner = next(n for n in MESH if _status(env, env[n])["networks"][0]["role"] == "owner")
    names = {x["name"] for x in _net_json(env, env[owner], "members", "lan")}
    assert names == set(MESH), names
    # a network that does not exist is an error too, not a silent success
    r = _net(env, mallory, "join", "nope", "--password", "x", check=False)
    assert "no network named" in _one_line_error(r)


def test_approval_mode_holds_joiner_until_approved(env: Env) -> None:
    lab, alice, dave = env.lab, env["alice"], env["dave"]
    _net(env, alice, "create", "club", "--password", "pw-club", "--mode", "approval")
    # dave shares no network with alice
    assert _status(env, dave)["networks"] == []
    assert "dave" not in _peers(_status(env, alice))

    r = _net(env, dave, "join", "club", "--password", "pw-club", check=False)
    line = _one_line_error(r)
    assert "needs the owner's approval" in line, line
    members = {x["name"]: x for x in _net_json(env, alice, "members", "club")}
    assert members["dave"]["role"] == "pending", members
    assert members["alice"]["role"] == "owner", members
    club = {n["name"]: n for n in _net_json(env, alice, "list")}["club"]
    assert club["pending"] == 1 and club["members"] == 1 and club["join_mode"] == "approval", club
    # alice's status learns about the pending member through a pushed update
    wait_until(lambda: {n["name"]: n for n in _status(env, alice)["networks"]}["club"]["pending"]
               == 1, 5, what="alice's status to show 1 pending in club")
    dave_nets = _net_json(env, dave, "list")
    assert [(n["name"], n["role"]) for n in dave_nets] == [("club", "pending")], dave_nets
    # a pending member has no tunnel and may not list members
    assert _status(env, dave)["peers"] == []
    assert not _ping(lab, dave.ns, env.vips["alice"], 2), "pending dave reached alice"
    assert "dave" not in _peers(_status(env, alice))
    r = _net(env, dave, "members", "club", check=False)
    assert "not a member" in _one_line_error(r)
    # asking again stays pending; only the owner can approve
    r = _net(env, dave, "join", "club", "--password", "pw-club", check=False)
    assert "approval" in _one_line_error(r)
    r = _net(env, env["bob"], "approve", "club", "dave", check=False)
    assert r.returncode != 0

    t0 = time.monotonic()
    _net(env, alice, "approve", "club", "dave")
    _wait_ping(env, "dave", "alice", timeout=5)
    took = time.monotonic() - t0
    assert took < 5, took
    assert _ping(lab, alice.ns, env.vips["dave"], 2)
    p = _peers(_status(env, dave))["alice"]
    assert p["online"] and p["networks"] == ["club"], p
    assert set(_peers(_status(env, dave))) == {"alice"}   # club has nobody else
    members = {x["name"]: x["role"] for x in _net_json(env, alice, "members", "club")}
    assert members == {"alice": "owner", "dave": "member"}, members
    club = {n["name"]: n for n in _net_json(env, alice, "list")}["club"]
    assert club["pending"] == 0 and club["members"] == 2, club


def test_hub_and_spoke(env: Env) -> None:
    lab = env.lab
    alice, carol, mallory, dave = env["alice"], env["carol"], env["mallory"], env["dave"]
    _net(env, alice, "create", "star", "--password", "pw-star", "--type", "hub-and-spoke")
    for n in (carol, mallory, dave):
        _net(env, n, "join", "star", "--password", "pw-star")
    # no hub yet: spokes see nobody through star
    assert _status(env, mallory)["peers"] == []
    _net(env, alice, "set", "star", "--hub", "carol")
    roles = {x["name"]: x["role"] for x in _net_json(env, alice, "members", "star")}
    assert roles == {"alice": "owner", "carol": "hub", "mallory": "member", "dave": "member"}

    wait_until(lambda: "carol" in _peer_names(env, "mallory"), 5,
               what="mallory to get a tunnel to the hub")
    _wait_ping(env, "mallory", "carol")
    _wait_ping(env, "dave", "carol")
    _wait_ping(env, "carol", "mallory")
    # the two spokes (which share no other network) get no tunnel to each other
    pm, pd = _peers(_status(env, mallory)), _peers(_status(env, dave))
    assert set(pm) == {"carol"}, pm
    assert pm["carol"]["networks"] == ["star"], pm["carol"]
    assert "mallory" not in pd and set(pd) == {"alice", "carol"}, pd
    assert pd["carol"]["networks"] == ["star"] and pd["alice"]["networks"] == ["club"], pd
    pc = _peers(_status(env, carol))
    assert sorted(pc["alice"]["networks"]) == ["lan", "star"], pc["alice"]
    assert not _ping(lab, mallory.ns, env.vips["dave"], 2), "spoke reached spoke"
    assert not _ping(lab, dave.ns, env.vips["mallory"], 1), "spoke reached spoke"
    # the owner is a spoke of star too: mallory shares nothing else with alice
    assert not _ping(lab, mallory.ns, env.vips["alice"], 1), "spoke reached the (spoke) owner"


def test_wrong_server_key_refuses_login(env: Env) -> None:
    lab = env.lab
    other_cfg = lab.write("server2.toml", f'state_dir = "{lab.dir / "server2"}"\n')
    other_key = lab.shoal(env.srv_ns, "server", "init", "-c", str(other_cfg)
                          ).stdout.strip().splitlines()[-1]
    assert other_key != env.server_key and len(other_key) == 44
    _scenario_networks(env)
    eve = Node("eve", env.eve_ns, _node_config(lab, "eve", other_key, lan=True))
    eve.proc = lab.spawn(eve.ns, [netlab.SHOAL, "up", "-c", str(eve.config)], "eve")
    try:
        rc = eve.proc.wait(15)
    except subprocess.TimeoutExpired:
        raise AssertionError("eve kept running with the wrong server key:\n"
                             + lab.log_text("eve")[-3000:]) from None
    log = lab.log_text("eve")
    assert rc != 0, log
    assert "presented key" in log and env.server_key in log and other_key in log, log
    assert "refusing to log in" in log, log
    assert "Traceback" not in log, log
    assert not Path(f"{lab.dir / 'eve'}.sock").exists(), "API socket left behind"
    assert lab.sh(eve.ns, "ip link show shoal0", check=False).returncode != 0
    # eve never logged in: no member anywhere sees her
    for n in MESH:
        assert "eve" not in _peers(_status(env, env[n]))
    assert "eve" not in {x["name"] for x in _net_json(env, env["alice"], "members", "star")}


def test_garbage_on_control_port_disturbs_nobody(env: Env) -> None:
    lab = env.lab
    _scenario_networks(env)
    script = lab.write("attack.py", ATTACKER)
    r = lab.sh(env.attacker_ns, f"{PY} {script} {SERVER_IP} 7400", timeout=60)
    res = {ln.split()[0]: ln.split()[1:] for ln in r.stdout.splitlines()}
    for case in ("random", "random-after-preamble-then-eof", "short-handshake-frame",
                 "bad-handshake-frame-lengths", "http", "tls-hello",
                 "oversized-frame-then-eof", "empty-then-eof", "handshake-then-garbage",
                 "handshake-then-bad-message"):
        assert res[case][0] == "closed", f"{case}: the server did not hang up ({r.stdout})"
    assert res["http"][1] == "0", "the server answered an HTTP request"
    assert int(res["half-handshake"][1]) > 0, r.stdout
    assert res["burst"] == ["40"], r.stdout

    assert env.server is not None and env.server.poll() is None, lab.log_text("server")[-3000:]
    slog = lab.log_text("server")
    assert "Traceback" not in slog, slog[-3000:]
    for n in ("alice", "bob", "carol", "dave", "mallory"):
        st = _status(env, env[n])
        assert st["node"]["online"] and st["node"]["server_error"] is None, st["node"]
        assert "coordination server" not in lab.log_text(n), \
            f"{n} lost its control connection:\n{lab.log_text(n)[-2000:]}"
    for a, b in (("alice", "bob"), ("bob", "carol"), ("dave", "alice"), ("mallory", "carol")):
        _wait_ping(env, a, b, timeout=5)  # tunnels keep working after the garbage
    # the server still serves requests
    assert {x["name"] for x in _net_json(env, env["alice"], "members", "lan")} == set(MESH)


def test_server_crash_keeps_tunnels_restart_restores(env: Env) -> None:
    lab = env.lab
    names = ("alice", "bob", "carol", "dave", "mallory")
    pairs = (("alice", "bob"), ("bob", "carol"), ("carol", "alice"), ("dave", "alice"),
             ("mallory", "carol"))
    _scenario_networks(env)
    assert env.server is not None
    env.server.send_signal(signal.SIGKILL)
    env.server.wait(5)
    t_kill = time.monotonic()
    for n in names:
        wait_until(lambda n=n: not _status(env, env[n])["node"]["online"], 5,
                   what=f"{n} to notice the server is gone")
    for a, b in pairs:
        assert _ping(lab, env[a].ns, env.vips[b], 2), f"{a} -> {b} while the server is down"
    st = _status(env, env["alice"])
    assert st["node"]["virtual_ip"] == env.vips["alice"] and st["node"]["server_error"]
    assert {p["name"] for p in st["peers"] if p["online"]} == {"bob", "carol", "dave"}, st["peers"]
    down_for = time.monotonic() - t_kill

    # continuous pings across the restart (every 0.1 s): nodes log in again one by one
    pingers = {(a, b): lab.spawn(env[a].ns, ["ping", "-n", "-i", "0.1", "-W", "1", env.vips[b]],
                                 f"ping-{a}-{b}") for a, b in pairs}
    _start_server(env)
    t0 = time.monotonic()
    for n in names:
        st = _wait_online(env, env[n], timeout=15)
        assert st["node"]["virtual_ip"] == env.vips[n], (n, st["node"], env.vips)
    relogin = time.monotonic() - t0
    time.sleep(1)
    lost = {}
    for (a, b), p in pingers.items():
        p.send_signal(signal.SIGINT)
        p.wait(5)
        lost[f"{a}->{b}"] = _ping_loss(lab.log_text(f"ping-{a}-{b}"))
    # ARCHITECTURE §3: nodes re-login with backoff; the brief asks for ~10 s
    assert relogin < 10, f"re-login took {relogin:.1f}s (server was down {down_for:.1f}s)"
    for a, b in pairs:
        _wait_ping(env, a, b, timeout=10)
    # the state survived: networks, roles, hubs, members
    nets = {n["name"]: n for n in _net_json(env, env["alice"], "list")}
    assert {k: v["role"] for k, v in nets.items()} == {"lan": nets["lan"]["role"],
                                                      "club": "owner", "star": "owner"}
    roles = {x["name"]: x["role"] for x in _net_json(env, env["alice"], "members", "star")}
    assert roles == {"alice": "owner", "carol": "hub", "mallory": "member", "dave": "member"}
    assert set(_peers(_status(env, env["mallory"]))) == {"carol"}
    # PRODUCT BUG (reported): after a server restart the first node to log in again gets a
    # full peer snapshot that lacks the peers not yet logged in again, and Node._on_peers
    # (core/src/shoal/node.py) tears those working tunnels down until they log in too: the
    # pings between two nodes stop for the time between their re-logins. Expected: tunnels
    # that carry traffic survive a server restart (ARCHITECTURE §3) - at most a packet or two.
    assert all(n <= 2 for n in lost.values()), \
        f"pings lost across the server restart (0.1 s apart): {lost}"


def test_stopped_node_goes_offline_at_its_peers(env: Env) -> None:
    lab, carol = env.lab, env["carol"]
    _scenario_networks(env)
    assert carol.proc is not None
    t0 = time.monotonic()
    rc = lab.stop(carol.proc)
    assert rc == 0, lab.log_text("carol")[-3000:]

    def offline_at(n: str) -> bool:
        p = _peers(_status(env, env[n])).get("carol")
        return p is not None and (p["online"] is False or p["path"] == "none")

    for n in ("alice", "bob", "mallory", "dave"):
        wait_until(lambda n=n: offline_at(n), 5, what=f"{n} to see carol offline")
    assert time.monotonic() - t0 < 6
    p = _peers(_status(env, env["alice"]))["carol"]
    assert p["online"] is False and p["path"] == "none" and p["virtual_ip"] == env.vips["carol"]
    lan = {n["name"]: n for n in _status(env, env["alice"])["networks"]}["lan"]
    assert lan["members"] == 3 and lan["online"] == 2, lan
    members = {x["name"]: x["online"] for x in _net_json(env, env["alice"], "members", "lan")}
    assert members == {"alice": True, "bob": True, "carol": False}, members
    # the others are unaffected
    assert _ping(lab, env["alice"].ns, env.vips["bob"], 2)
    assert not _ping(lab, env["alice"].ns, env.vips["carol"], 1)


def test_relogin_is_prompt_after_each_good_session(env: Env) -> None:
    """A control connection that breaks after a successful login is re-established at
    once (the backoff starts over after a login), however often it happens."""
    lab, bob = env.lab, env["bob"]
    took: list[float] = []
    for i in range(5):
        _wait_online(env, bob)
        time.sleep(0.3)
        before = lab.log_text("bob").count("logged in to")
        t0 = time.monotonic()
        # abort bob's control connection (his side), as a broken NAT mapping or link would
        lab.sh(bob.ns, f"ss -K dst {SERVER_IP} dport = 7400", check=False)
        try:
            wait_until(lambda: lab.log_text("bob").count("logged in to") > before, 3,
                       interval=0.05, what="bob to log in again")
        except TimeoutError:
            took.append(float("inf"))
            break
        took.append(round(time.monotonic() - t0, 2))
    # PRODUCT BUG (reported): ControlClient.run (core/src/shoal/control/client.py) never
    # resets its backoff: ``delay = BACKOFF_MIN`` follows ``await self._session()``, which
    # only ever ends by raising, so the delay keeps doubling across good sessions (to 30 s,
    # x0.5-1.5 jitter). Expected: every re-login here within ~1 s of the break.
    assert len(took) == 5 and max(took) < 2, \
        f"seconds to log in again after each break: {took}"
    _wait_online(env, bob)
    assert _ping(lab, bob.ns, env.vips["alice"], 2)
