"""End to end: one virtual LAN — broadcast, multicast, TAP (ARP, raw frames, IPX), DOSBox IPXNET.

Topology (all in namespaces this module creates), one switch, one server::

    server 203.0.113.10 (control :7400)
    TUN:  alice .21  bob .22  carol .23   network "lan"; alice and bob also share "games"
          dave  .24                       network "other" (the outsider)
    TAP:  erin  .31  frank .32  gina .33  network "l2lan"
          hank  .34                       network "l2other" (the outsider)

Every node runs the udp, broadcast and ipx plugins, with a DOSBox IPXNET server on
127.0.0.1:213. carol has a low flood limit for the storm test.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from shoal.testing import netlab
from shoal.testing.netlab import Lab, wait_until

_REASON = netlab.can_run()
pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(_REASON is not None, reason=f"netns lab: {_REASON}"),
]

PY = sys.executable
SERVER_IP = "203.0.113.10"
CONTROL = f"{SERVER_IP}:7400"
UNDERLAY = {"alice": "203.0.113.21", "bob": "203.0.113.22", "carol": "203.0.113.23",
            "dave": "203.0.113.24", "erin": "203.0.113.31", "frank": "203.0.113.32",
            "gina": "203.0.113.33", "hank": "203.0.113.34"}
NETWORKS = {"alice": ["lan", "games"], "bob": ["lan", "games"], "carol": ["lan"],
            "dave": ["other"], "erin": ["l2lan"], "frank": ["l2lan"], "gina": ["l2lan"],
            "hank": ["l2other"]}
TAP = ("erin", "frank", "gina", "hank")
GROUPS = {"tun": (("alice", "bob", "carol"), "dave"), "tap": (("erin", "frank", "gina"), "hank")}
PORT = 40404
GROUP4, GROUP6 = "239.1.2.3", "ff05::5ea1"
DIRECTED = "100.127.255.255"
DOSBOX = [PY, "-m", "shoal_frames_ipx.dosbox_client", "--server", "127.0.0.1:213"]

# Listens on IFACE for UDP to PORT (v4: broadcast and GROUP4; v6: GROUP6) and prints
# one JSON line per datagram: source, destination, whether it arrived on IFACE, payload.
RECEIVER = """\
import json, select, socket, struct, sys
iface, port, g4, g6 = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
idx = socket.if_nametoindex(iface)
IP_PKTINFO = 8
s4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s4.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
s4.bind(("", port))
s4.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
              socket.inet_aton(g4) + socket.inet_aton("0.0.0.0") + struct.pack("i", idx))
s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
s6.bind(("::", port))
s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
              socket.inet_pton(socket.AF_INET6, g6) + struct.pack("I", idx))
print(json.dumps({"ready": True}), flush=True)
while True:
    for s in select.select([s4, s6], [], [])[0]:
        data, anc, _, addr = s.recvmsg(4096, 256)
        ifindex, dst = None, None
        for level, typ, cdata in anc:
            if s is s4 and typ == IP_PKTINFO:
                ifindex = struct.unpack("i", cdata[:4])[0]
                dst = socket.inet_ntoa(cdata[8:12])
            elif s is s6 and typ == socket.IPV6_PKTINFO:
                dst = socket.inet_ntop(socket.AF_INET6, cdata[:16])
                ifindex = struct.unpack("I", cdata[16:20])[0]
        print(json.dumps({"src": addr[0], "dst": dst, "on_iface": ifindex == idx,
                          "payload": data.decode(errors="replace")}), flush=True)
"""

# Sends TAG:<dst> to each IPv4 destination and to GROUP6, choosing no interface: the
# routes the broadcast plugin added steer them into the Shoal interface.
SENDER = """\
import socket, sys
port, tag, g6 = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
for dst in sys.argv[4:]:
    s.sendto(f"{tag}:{dst}".encode(), (dst, port))
s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
s6.sendto(f"{tag}:{g6}".encode(), (g6, port))
"""

# Sends N limited broadcasts as fast as it can.
STORM = """\
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
for i in range(int(sys.argv[2])):
    s.sendto(f"storm:{i}".encode(), ("255.255.255.255", int(sys.argv[1])))
"""

# Raw Ethernet on IFACE. "send DST_MAC HEXFRAME_BODY...": each body is EtherType/length +
# payload, sent from the interface's own MAC. "sniff MAC...": prints every received
# frame from one of those MACs that is not IPv4/IPv6/ARP.
RAW = """\
import json, socket, sys
iface, mode = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((iface, 0))
me = bytes.fromhex(open(f"/sys/class/net/{iface}/address").read().strip().replace(":", ""))
if mode == "send":
    dst = bytes.fromhex(sys.argv[3].replace(":", ""))
    for body in sys.argv[4:]:
        frame = dst + me + bytes.fromhex(body)
        s.send(frame + b"\\x00" * max(0, 60 - len(frame)))
    sys.exit(0)
macs = {bytes.fromhex(m.replace(":", "")) for m in sys.argv[3:]}
print(json.dumps({"ready": True}), flush=True)
while True:
    frame, addr = s.recvfrom(65535)
    if addr[2] == socket.PACKET_OUTGOING or frame[6:12] not in macs:
        continue
    if frame[12:14] in (b"\\x08\\x00", b"\\x86\\xdd", b"\\x08\\x06"):
        continue
    print(json.dumps({"src": frame[6:12].hex(), "dst": frame[0:6].hex(),
                      "type": frame[12:14].hex(), "body": frame[14:40].hex()}), flush=True)
"""


@dataclass
class Node:
    name: str
    ns: str
    config: Path
    proc: subprocess.Popen[bytes] | None = None
    vip: str = ""
    mac: str = ""


@dataclass
class Env:
    lab: Lab
    nodes: dict[str, Node]
    scripts: dict[str, Path] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]


# --------------------------------------------------------------------------- helpers
def _node_config(lab: Lab, name: str, server_key: str) -> Path:
    text = f"""\
name = "{name}"
state_dir = "{lab.dir / name}"
plugins = ["udp", "broadcast", "ipx"]
[server]
address = "{CONTROL}"
public_key = "{server_key}"
[interface]
mode = "{'tap' if name in TAP else 'tun'}"
[api]
socket = "{lab.dir / name}.sock"
[tunnel]
keepalive = 2
[plugin.ipx]
ipxnet_listen = "127.0.0.1:213"
"""
    if name == "carol":
        text += "[plugin.broadcast]\nrate_limit_pps = 20\nburst = 20\n"
    for net in NETWORKS[name]:
        text += f'\n[[networks]]\nname = "{net}"\npassword = "pw-{net}"\ncreate = true\n'
    return lab.write(f"{name}.toml", text)


def _status(env: Env, n: str) -> dict[str, Any]:
    return env.lab.status(env[n].ns, env[n].config)


def _alive(env: Env, n: str) -> None:
    p = env[n].proc
    assert p is not None
    if p.poll() is not None:
        raise AssertionError(f"{n} exited with {p.returncode}:\n{env.lab.log_text(n)[-3000:]}")


def _lines(env: Env, log: str) -> list[dict[str, Any]]:
    out = []
    for line in env.lab.log_text(log).splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def _ping(env: Env, src: str, dst: str) -> bool:
    r = env.lab.sh(env[src].ns, f"ping -n -q -c 1 -W 1 {env[dst].vip}", check=False, timeout=10)
    return r.returncode == 0


def _spawn_py(env: Env, n: str, script: str, args: list[str], log: str
              ) -> subprocess.Popen[bytes]:
    return env.lab.spawn(env[n].ns, [PY, str(env.scripts[script]), *args], log)


def _wait_ready(env: Env, logs: list[str], key: str = "ready") -> None:
    for log in logs:
        wait_until(lambda log=log: any(x.get(key) for x in _lines(env, log)), 10,
                   what=f"{log} to be ready")


# --------------------------------------------------------------------------- fixture
@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with Lab("lan") as lab:
        sw = lab.switch()
        srv = lab.ns("srv")
        lab.attach(sw, srv, f"{SERVER_IP}/24")
        server_cfg = lab.write("server.toml",
                               f'state_dir = "{lab.dir / "server"}"\nlisten = "{CONTROL}"\n')
        key = lab.shoal(srv, "server", "init", "-c", str(server_cfg)).stdout.strip().splitlines()[-1]
        server = lab.spawn(srv, [netlab.SHOAL, "server", "run", "-c", str(server_cfg)], "server")
        wait_until(lambda: "listening" in lab.log_text("server") or server.poll() is not None, 10,
                   what="the server to listen")
        nodes = {}
        for name, addr in UNDERLAY.items():
            ns = lab.ns(name[:4])
            lab.attach(sw, ns, f"{addr}/24")
            nodes[name] = Node(name, ns, _node_config(lab, name, key))
        e = Env(lab, nodes)
        for script in ("RECEIVER", "SENDER", "STORM", "RAW"):
            e.scripts[script] = lab.write(f"{script.lower()}.py", globals()[script])
        for n in nodes.values():
            n.proc = lab.spawn(n.ns, [netlab.SHOAL, "up", "-c", str(n.config)], n.name)

        def ready(n: str) -> bool:
            _alive(e, n)
            st = _status(e, n)
            b = st.get("broadcast", {})
            nets = {x["name"] for x in st["networks"]}
            if not (st["node"]["online"] and st["node"]["virtual_ip"]
                    and b.get("routes", {}).get("configured") and nets == set(NETWORKS[n])):
                return False
            e[n].vip, e[n].mac = st["node"]["virtual_ip"], st["node"]["mac"]
            return True

        for n in nodes:
            wait_until(lambda n=n: ready(n), 15, what=f"{n} to log in, join and set up routes")
        for members, _ in GROUPS.values():
            for a, b in itertools.permutations(members, 2):
                wait_until(lambda a=a, b=b: _ping(e, a, b), 15, interval=0.05,
                           what=f"{a} -> {b} over the overlay")
        try:
            yield e
        finally:
            if os.environ.get("SHOAL_TEST_KEEP_LOGS"):
                for n in ("server", *nodes):
                    sys.stderr.write(f"--- {n}.log\n{lab.log_text(n)}\n")


# --------------------------------------------------------------------------- tests
@pytest.mark.parametrize("mode", ["tun", "tap"])
def test_broadcast_and_multicast_reach_each_member_exactly_once(env: Env, mode: str) -> None:
    members, outsider = GROUPS[mode]
    sender = members[0]
    everyone = (*members, outsider)
    procs = [_spawn_py(env, n, "RECEIVER", ["shoal0", str(PORT), GROUP4, GROUP6], f"rx-{mode}-{n}")
             for n in everyone]
    _wait_ready(env, [f"rx-{mode}-{n}" for n in everyone])
    time.sleep(0.3)  # let the group joins (IGMP/MLD) settle
    before = _status(env, sender)["broadcast"]
    env.lab.sh(env[sender].ns, f"{PY} {env.scripts['SENDER']} {PORT} {mode} {GROUP6} "
                               f"255.255.255.255 {DIRECTED} {GROUP4}")
    dsts = ["255.255.255.255", DIRECTED, GROUP4, GROUP6]
    want = {f"{mode}:{d}" for d in dsts}

    def got(n: str) -> list[dict[str, Any]]:
        return [x for x in _lines(env, f"rx-{mode}-{n}") if x.get("payload", "") in want]

    for n in members[1:]:
        wait_until(lambda n=n: len(got(n)) >= len(want), 5, what=f"{n} to receive all four")
    time.sleep(0.5)  # duplicates, if any, would arrive by now
    for p in procs:
        env.lab.stop(p)
    sender_ip6 = _status(env, sender)["node"]["virtual_ip6"]
    for n in members[1:]:
        rx = got(n)
        assert sorted(x["payload"] for x in rx) == sorted(want), f"{n}: {rx}"   # exactly once
        for x in rx:
            assert x["on_iface"], f"{n} got it on another interface: {x}"
            assert x["src"] == (sender_ip6 if ":" in x["dst"] else env[sender].vip), x
    assert got(outsider) == [], f"the outsider {outsider} heard the LAN: {got(outsider)}"
    # the sender may see its own broadcasts once through the kernel's loopback, never more
    own = [x["payload"] for x in got(sender)]
    assert len(own) == len(set(own)) and not any(GROUP4 in p or GROUP6 in p for p in own), own

    after = _status(env, sender)["broadcast"]
    assert after["packets"] - before["packets"] >= 4
    net = NETWORKS[sender][0]
    assert after["networks"][net]["copies"] - before["networks"][net]["copies"] >= 4 * 2
    assert after["dropped_rate_limit"] == 0
    if mode == "tun":  # bob shares two networks with alice and still got one copy (above)
        assert after["kinds"]["broadcast"] >= 1 and after["kinds"]["directed_broadcast"] >= 1
        assert after["kinds"]["multicast4"] >= 1 and after["kinds"]["multicast6"] >= 1
        assert after["networks"]["games"]["copies"] >= 4


def test_storm_is_rate_limited_and_counted(env: Env) -> None:
    rx = _spawn_py(env, "alice", "RECEIVER", ["shoal0", str(PORT + 1), GROUP4, GROUP6], "rx-storm")
    _wait_ready(env, ["rx-storm"])
    before = _status(env, "carol")["broadcast"]
    env.lab.sh(env["carol"].ns, f"{PY} {env.scripts['STORM']} {PORT + 1} 500")
    time.sleep(1.0)
    env.lab.stop(rx)
    after = _status(env, "carol")["broadcast"]
    got = [x for x in _lines(env, "rx-storm") if x.get("payload", "").startswith("storm:")]
    dropped = after["dropped_rate_limit"] - before["dropped_rate_limit"]
    assert after["rate_limit_pps"] == 20 and after["burst"] == 20
    assert dropped >= 400, after
    assert 10 <= len(got) <= 20 + 20 * 3, len(got)  # the burst plus what refilled meanwhile
    assert _status(env, "alice")["broadcast"]["dropped_rate_limit"] == 0


def test_tap_arp_resolves_peers_by_their_mac(env: Env) -> None:
    for a, b in (("erin", "frank"), ("erin", "gina"), ("gina", "frank")):
        assert _ping(env, a, b)
        r = env.lab.sh(env[a].ns, "ip -j neigh show dev shoal0")
        neigh = {x["dst"]: x.get("lladdr") for x in json.loads(r.stdout or "[]")}
        assert neigh.get(env[b].vip) == env[b].mac, (a, b, neigh)
    assert not _ping(env, "hank", "erin")
    st = _status(env, "erin")["broadcast"]
    assert st["kinds"].get("l2_broadcast", 0) >= 1   # the ARP requests were flooded


def test_tap_raw_and_ipx_frames_cross(env: Env) -> None:
    lab = env.lab
    macs = [env[n].mac for n in ("erin", "frank", "gina")]
    sniffers = [_spawn_py(env, n, "RAW", ["shoal0", "sniff", *macs], f"raw-{n}")
                for n in ("frank", "gina", "hank")]
    _wait_ready(env, [f"raw-{n}" for n in ("frank", "gina", "hank")])
    from shoal_frames_ipx.framing import IpxFraming, frame_ipx
    from shoal_frames_ipx.ipx_header import BROADCAST_NODE, IpxAddress, IpxHeader, encode

    ipx = encode(IpxHeader(IpxAddress(node=BROADCAST_NODE, socket=0x452),
                           IpxAddress(node=bytes.fromhex(env["erin"].mac.replace(":", "")),
                                      socket=0x452)), b"SAP test")
    bodies = [frame_ipx(f, b"", b"", ipx).hex() for f in IpxFraming]  # type/length + payload
    before_tx = _status(env, "erin")["ipx"]["frames"]["tx"]
    before_rx = _status(env, "frank")["ipx"]["frames"]["rx"]
    raw_uni = "88b5" + b"shoal raw unicast".hex()
    raw_bc = "88b5" + b"shoal raw broadcast".hex()
    lab.sh(env["erin"].ns, f"{PY} {env.scripts['RAW']} shoal0 send {env['frank'].mac} {raw_uni}")
    lab.sh(env["erin"].ns, f"{PY} {env.scripts['RAW']} shoal0 send ff:ff:ff:ff:ff:ff {raw_bc} "
                           + " ".join(bodies))

    def frames(n: str) -> list[dict[str, Any]]:
        return [x for x in _lines(env, f"raw-{n}") if "type" in x]

    wait_until(lambda: len(frames("frank")) >= 6 and len(frames("gina")) >= 5, 5,
               what="frank and gina to receive the raw frames")
    time.sleep(0.3)
    for p in sniffers:
        lab.stop(p)
    erin = env["erin"].mac.replace(":", "")
    fr, gi = frames("frank"), frames("gina")
    assert all(x["src"] == erin for x in fr + gi)
    assert [x for x in fr if x["type"] == "88b5" and x["dst"] == env["frank"].mac.replace(":", "")] \
        and len([x for x in fr if x["type"] == "88b5"]) == 2, fr
    assert len([x for x in gi if x["type"] == "88b5"]) == 1, gi   # only the broadcast
    for got in (fr, gi):
        ipx_frames = [x for x in got if x["type"] != "88b5"]
        assert len(ipx_frames) == 4, ipx_frames                    # each framing exactly once
    assert frames("hank") == []
    after_tx = _status(env, "erin")["ipx"]["frames"]["tx"]
    after_rx = _status(env, "frank")["ipx"]["frames"]["rx"]
    for f in IpxFraming:
        assert after_tx[f.value] - before_tx[f.value] == 1, (f, after_tx)
        assert after_rx[f.value] - before_rx[f.value] == 1, (f, after_rx)


@pytest.mark.parametrize("mode", ["tun", "tap"])
def test_dosbox_ipxnet_clients_on_different_nodes(env: Env, mode: str) -> None:
    lab = env.lab
    (a, b, _), outsider = GROUPS[mode]
    responders = {n: lab.spawn(env[n].ns, [*DOSBOX, "--name", n, "--reply", "--duration", "8"],
                               f"ipx-{mode}-{n}") for n in (b, outsider)}
    _wait_ready(env, [f"ipx-{mode}-{n}" for n in responders], key="node")
    p = lab.spawn(env[a].ns, [*DOSBOX, "--name", a, "--ping", "--broadcast", f"hello from {a}",
                              "--ack", "--duration", "2"], f"ipx-{mode}-{a}")
    assert p.wait(15) == 0, lab.log_text(f"ipx-{mode}-{a}")
    time.sleep(0.3)
    for r in responders.values():
        lab.stop(r)
    la, lb, lo = (_lines(env, f"ipx-{mode}-{n}") for n in (a, b, outsider))
    node = {n: next(x["node"] for x in lines if x["event"] == "registered")
            for n, lines in ((a, la), (b, lb), (outsider, lo))}
    # node numbers name the node: overlay IPv4 then the client's id
    for n in (a, b):
        assert node[n][:11] == ":".join(f"{int(o):02x}" for o in env[n].vip.split(".")), node
    ping = next(x for x in la if x["event"] == "ping")
    assert ping["replies"] == [node[b]], ping                     # not the outsider
    rx_a = [x for x in la if x["event"] == "rx"]
    rx_b = [x for x in lb if x["event"] == "rx"]
    assert [(x["src"], x["payload"], x["broadcast"]) for x in rx_a] == \
        [(node[b], f"re:hello from {a}", False)], rx_a
    assert [(x["src"], x["payload"], x["broadcast"]) for x in rx_b] == \
        [(node[a], f"hello from {a}", True), (node[a], f"ack:re:hello from {a}", False)], rx_b
    assert [x for x in lo if x["event"] == "rx"] == [], lo      # the outsider saw nothing
    st = _status(env, a)["ipx"]["ipxnet"]
    assert st["error"] is None and st["bridge"].startswith(env[a].vip)
    assert st["counters"]["registrations"] >= 1 and st["counters"]["broadcasts"] >= 2
    assert st["remote_clients_per_node"].get(b, 0) >= 1
    assert outsider not in st["remote_clients_per_node"]
    assert _status(env, outsider)["ipx"]["ipxnet"]["counters"]["from_nodes"] == 0
