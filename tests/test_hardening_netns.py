"""End to end: the server and its relay under abuse (real processes in namespaces).

Topology (one switch)::

    server   203.0.113.10 (control :7400, relay udp+tcp :3480, [limits] window 10 s)
             203.0.113.11 (a second server, registration = "key", control :7400)
    alice    203.0.113.21   network "a" (owner)
    bob      203.0.113.22   network "b" (owner)
    carol    203.0.113.23   starts during the relay TCP flood
    frank    203.0.113.27   starts during the control port flood
    dave     203.0.113.25   no pre-auth key, against the "key" server
    erin     203.0.113.26   with a pre-auth key, against the "key" server
    x        203.0.113.66..90  the attacker: relay abuse (tests/relay_abuse.py), TCP flood

Checks: the relay forwards only between nodes sharing a network; a spoofed
re-registration does not move a binding; 5,000 idle relay TCP connections
neither block logins nor flood the log; 19,000 connections to the control
port that never finish their handshake neither block a login nor keep the
server's memory once they are gone; registration = "key" refuses a node
without a key in one clear line and lets one with a key in; the sixth wrong
password within the window is refused with a retry-after, and the right one
works after the wait.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shoal import api
from shoal.errors import ShoalError
from shoal.testing import netlab
from shoal.testing.fleet import NodeProc, node_config, server_config, wait_online
from shoal.testing.netlab import SHOAL, Lab, wait_until

_REASON = netlab.can_run()
pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(_REASON is not None, reason=f"netns lab: {_REASON}"),
]

SERVER_IP, KEY_SERVER_IP = "203.0.113.10", "203.0.113.11"
RELAY = f"{SERVER_IP}:3480"
ABUSE = str(Path(__file__).with_name("relay_abuse.py"))
WINDOW = 10
FLOOD_SOURCES = [f"203.0.113.{66 + i}" for i in range(25)]

# Opens N TCP connections from the given sources, paced; with STALL=1 each sends a
# control-channel length prefix and then nothing (a stalled handshake). Holds them
# HOLD seconds, prints how many the server left open ("alive"), closes them all.
#   FLOOD HOST PORT HOLD N SOURCES STALL
FLOOD = """\
import resource, socket, sys, time
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
host, port, hold, n = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
sources, stall = sys.argv[5].split(","), sys.argv[6] == "1"
socks = []
for i in range(min(n, hard - 100)):
    s = socket.socket()
    s.setblocking(False)
    s.bind((sources[i % len(sources)], 0))
    try:
        s.connect((host, port))
    except BlockingIOError:
        pass
    socks.append(s)
    if i % 1000 == 999:
        time.sleep(0.05)
if stall:
    time.sleep(0.5)
    for s in socks:
        try:
            s.send(b"\\x00\\x60")
        except OSError:
            pass
print("opened", len(socks), flush=True)
time.sleep(hold)
alive = 0
for s in socks:
    try:
        s.send(b"")
        alive += s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        alive += 1
    except OSError:
        pass
print("alive", alive, flush=True)
for s in socks:
    s.close()
print("closed", flush=True)
"""


@dataclass
class World:
    lab: Lab
    srv: str
    server_pid: int
    attacker: str
    server_key: str
    key_server_cfg: Path
    key_server_key: str
    nodes: dict[str, NodeProc]
    keys: dict[str, str]


def _spawn(lab: Lab, ns: str, name: str, server_key: str, networks: list[tuple[str, str, bool]],
           address: str = f"{SERVER_IP}:7400", auth_key: str | None = None) -> NodeProc:
    cfg = node_config(lab, name, server_key, ["udp", "relay"], networks)
    text = cfg.read_text().replace(f"{SERVER_IP}:7400", address)
    if auth_key is not None:
        text = text.replace(f'public_key = "{server_key}"',
                            f'public_key = "{server_key}"\nauth_key = "{auth_key}"')
    cfg.write_text(text)
    node = NodeProc(name, ns, cfg)
    node.proc = lab.spawn(ns, [SHOAL, "up", "-c", str(cfg)], name)
    return node


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with Lab("hrd") as lab:
        sw = lab.switch()
        srv = lab.ns("srv")
        iface = lab.attach(sw, srv, f"{SERVER_IP}/24")
        lab.sh(srv, f"ip addr add {KEY_SERVER_IP}/24 dev {iface}")
        nss = {}
        for name, last in (("alice", 21), ("bob", 22), ("carol", 23), ("dave", 25),
                           ("erin", 26), ("frank", 27)):
            nss[name] = lab.ns(name[:3])
            lab.attach(sw, nss[name], f"203.0.113.{last}/24")
        attacker = lab.ns("x")
        xif = lab.attach(sw, attacker, f"{FLOOD_SOURCES[0]}/24")
        for a in FLOOD_SOURCES[1:]:
            lab.sh(attacker, f"ip addr add {a}/24 dev {xif}")
        cfg = server_config(lab)
        cfg.write_text(cfg.read_text() + f"[limits]\nwindow = {WINDOW}\n")
        server_key = lab.shoal(srv, "server", "init", "-c", str(cfg)).stdout.split()[-1]
        server = lab.spawn(srv, [SHOAL, "server", "run", "-c", str(cfg)], "server")
        wait_until(lambda: "listening" in lab.log_text("server"), 30, what="the server to listen")
        key_cfg = lab.write("key-server.toml", f'''state_dir = "{lab.dir}/key-server"
listen = "{KEY_SERVER_IP}:7400"
registration = "key"
''')
        key_server_key = lab.shoal(srv, "server", "init", "-c", str(key_cfg)
                                   ).stdout.strip().splitlines()[-1]
        lab.spawn(srv, [SHOAL, "server", "run", "-c", str(key_cfg)], "key-server")
        wait_until(lambda: "listening" in lab.log_text("key-server"), 30,
                   what="the key server to listen")
        nodes = {"alice": _spawn(lab, nss["alice"], "alice", server_key, [("a", "pw-a", True)]),
                 "bob": _spawn(lab, nss["bob"], "bob", server_key, [("b", "pw-b", True)])}
        keys = {}
        for n in nodes.values():
            st = wait_online(lab, n, timeout=30)
            keys[n.name] = st["node"]["public_key"]
            wait_until(lambda n=n: n.status(lab).get("relay", {}).get("ready"), 30,
                       what=f"{n.name}'s relay registration")
        yield World(lab, srv, server.pid, attacker, server_key, key_cfg, key_server_key, nodes, keys)


def _malformed(w: World, name: str) -> int:
    return int(w.nodes[name].status(w.lab)["node"]["drops"]["malformed"])


def _abuse(w: World, target: str, mode: str, *extra: str) -> dict[str, Any]:
    r = w.lab.sh(w.attacker, " ".join([sys.executable, ABUSE, f"{SERVER_IP}:7400", w.server_key,
                                       RELAY, w.keys[target], mode, *extra]), timeout=60)
    out: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    return out


def test_relay_forwards_only_between_nodes_sharing_a_network(world: World) -> None:
    before = _malformed(world, "alice")
    # a key in no network: its grant names none, nothing reaches alice
    out = _abuse(world, "alice", "send")
    assert out["tags"] == 0
    time.sleep(0.5)
    assert _malformed(world, "alice") == before, out
    # a member of bob's network only: nothing either
    out = _abuse(world, "alice", "send", "b", "pw-b")
    assert out["tags"] == 1
    time.sleep(0.5)
    assert _malformed(world, "alice") == before, out
    # a member of alice's network: delivered (the measurement can see packets)
    out = _abuse(world, "alice", "send", "a", "pw-a")
    wait_until(lambda: _malformed(world, "alice") >= before + 90, 5,
               what="the member's relayed packets at alice")


def test_spoofed_reregistration_does_not_move_a_binding(world: World) -> None:
    lab = world.lab
    alice_ns = world.nodes["alice"].ns
    line = lab.sh(alice_ns, f"ss -Hun state established dst {RELAY}").stdout.split()
    local = next(x for x in line if x.startswith("203.0.113.21:"))
    before = _malformed(world, "alice")
    out = _abuse(world, "alice", "spoof", "a", "pw-a", local)
    # the attacker's own binding stayed where it proved to be: its packets still go through
    assert not out["replies"].get("refused3"), out
    wait_until(lambda: _malformed(world, "alice") >= before + 90, 5,
               what="the attacker's packets, still labelled as its own")
    # alice still holds her registration at her own address
    assert world.nodes["alice"].status(lab)["relay"]["ready"]


def test_idle_relay_tcp_flood_neither_blocks_logins_nor_floods_the_log(world: World) -> None:
    lab = world.lab
    log_before = len(lab.log_text("server"))
    base = _rss_mib(world.server_pid)
    flood = lab.spawn(world.attacker, [sys.executable, "-c", FLOOD, SERVER_IP, "3480", "15",
                                       "5000", ",".join(FLOOD_SOURCES), "0"], "tcp-flood")
    wait_until(lambda: "opened" in lab.log_text("tcp-flood"), 30, what="the flood to open")
    started = time.monotonic()
    carol = _spawn(lab, _ns(world, "car"), "carol", world.server_key, [("a", "pw-a", False)])
    st = wait_online(lab, carol, timeout=30)
    took = time.monotonic() - started
    assert st["node"]["online"]
    assert api.call(str(lab.dir / "alice.sock"), "network", {"op": "list", "args": {}})
    flood.wait(40)
    text = lab.log_text("server")[log_before:]
    alive = lab.log_text("tcp-flood")
    print(f"login during the flood took {took:.2f} s; flood: {alive.split()}; "
          f"server log grew {len(text)} bytes")
    assert len(text) < 20_000, text[-2000:]
    assert "Traceback" not in text
    assert text.count("refusing TCP connections") <= 3, text[-2000:]
    # the relay notices the flood is over within its 10 s sweep and gives memory back
    wait_until(lambda: _rss_mib(world.server_pid) <= base + 16, 30,
               what=f"the server's memory to come back (base {base:.0f} MiB, now "
                    f"{_rss_mib(world.server_pid):.0f} MiB)")
    print(f"relay TCP flood: server RSS {base:.1f} MiB before, "
          f"{_rss_mib(world.server_pid):.1f} MiB after")


def _rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def test_control_port_flood_neither_blocks_logins_nor_keeps_memory(world: World) -> None:
    lab = world.lab
    pid = world.server_pid
    # started from the command line, the server runs on the C allocator (shoal.memory)
    assert b"PYTHONMALLOC=malloc" in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    base = _rss_mib(pid)
    flood = lab.spawn(world.attacker, [sys.executable, "-c", FLOOD, SERVER_IP, "7400", "20",
                                       "19000", ",".join(FLOOD_SOURCES), "1"], "control-flood")
    wait_until(lambda: "opened" in lab.log_text("control-flood"), 60,
               what="the control flood to open")
    peak = _rss_mib(pid)
    started = time.monotonic()
    frank = _spawn(lab, _ns(world, "fra"), "frank", world.server_key, [("a", "pw-a", False)])
    assert wait_online(lab, frank, timeout=20)["node"]["online"]
    took = time.monotonic() - started
    while flood.poll() is None:
        peak = max(peak, _rss_mib(pid))
        time.sleep(0.5)
    assert "closed" in lab.log_text("control-flood"), lab.log_text("control-flood")[-2000:]
    ended = time.monotonic()
    # the server notices the flood is over within its 10 s housekeeping and trims
    wait_until(lambda: _rss_mib(pid) <= base + 16, 40,
               what=f"the server's memory to come back (base {base:.0f} MiB, "
                    f"peak {peak:.0f} MiB, now {_rss_mib(pid):.0f} MiB)")
    metrics = lab.log_text("server")
    print(f"control flood: login took {took:.2f} s; server RSS {base:.1f} MiB before, "
          f"{peak:.1f} MiB at the peak, {_rss_mib(pid):.1f} MiB "
          f"{time.monotonic() - ended:.0f} s after the flood")
    assert metrics.count("closing the oldest") + metrics.count("refusing control") <= 12
    assert "Traceback" not in metrics


def _ns(w: World, short: str) -> str:
    return next(n for n in w.lab.namespaces if n.endswith(f"-{short}"))


def test_registration_key_refuses_nodes_without_a_key(world: World) -> None:
    lab = world.lab
    dave = _spawn(lab, _ns(world, "dav"), "dave", world.key_server_key, [],
                  address=f"{KEY_SERVER_IP}:7400")
    wait_until(lambda: "pre-auth key" in lab.log_text("dave"), 30, what="dave's refusal")
    time.sleep(2)   # dave retries with backoff; the refusal is still one line
    lines = [ln for ln in lab.log_text("dave").splitlines() if "refused" in ln]
    assert len(lines) == 1 and "auth_key" in lines[0], lines
    assert not dave.status(lab)["node"]["online"]

    key = lab.shoal(world.srv, "server", "key", "create", "-c", str(world.key_server_cfg)
                    ).stdout.strip().splitlines()[-1]
    erin = _spawn(lab, _ns(world, "eri"), "erin", world.key_server_key, [],
                  address=f"{KEY_SERVER_IP}:7400", auth_key=key)
    assert wait_online(lab, erin, timeout=30)["node"]["online"]
    # a single-use key: a second new node cannot use it again
    listed = lab.shoal(world.srv, "server", "key", "list", "-c", str(world.key_server_cfg)).stdout
    assert "used" in listed, listed


def test_sixth_wrong_password_waits_then_right_one_works(world: World) -> None:
    sock = str(world.lab.dir / "bob.sock")

    def join(pw: str) -> str:
        try:
            api.call(sock, "network", {"op": "join", "args": {"name": "a", "password": pw}})
            return "joined"
        except ShoalError as e:
            return str(e)

    answers = [join(f"wrong{i}") for i in range(5)]
    assert all("wrong password" in a for a in answers), answers
    sixth = join("wrong5")
    assert "try again in" in sixth, sixth
    wait = int(sixth.rsplit("try again in", 1)[1].split()[0])
    assert 1 <= wait <= WINDOW + 1
    assert "try again in" in join("pw-a")     # locked out: even the right one waits
    time.sleep(wait + 0.5)
    assert join("pw-a") == "joined"
