"""A LAN party over Shoal: broadcast discovery and DOSBox IPX across the VPN.

Everything runs in network namespaces on this machine: a coordination server
and three nodes (alice, bob, carol) on one switch, all in the network "lan",
each with the broadcast and ipx plugins and a DOSBox IPXNET server on
127.0.0.1:213.

1. "who's there?": alice broadcasts to 255.255.255.255 (and to a multicast
   group), bob and carol answer by unicast, like a game's server browser.
2. DOSBox IPX: bob and carol each run a DOSBox-compatible IPXNET client
   (what `ipxnet connect 127.0.0.1 213` does in DOSBox); alice's client runs
   `ipxnet ping`, then broadcasts and gets answers straight from each of them.
3. alice's `shoal status --json`: the broadcast and ipx sections.

Run as root: .venv/bin/python scripts/lan_demo.py
"""

from __future__ import annotations

import json
import sys
import time

from shoal.testing import fleet
from shoal.testing.netlab import Lab, can_run, wait_until

NODES = {"alice": "203.0.113.21", "bob": "203.0.113.22", "carol": "203.0.113.23"}
PORT = 40000
GROUP = "239.255.0.1"
PY = sys.executable
DOSBOX = [PY, "-m", "shoal_frames_ipx.dosbox_client", "--server", "127.0.0.1:213"]

# Answers "who's there?" (broadcast or multicast on shoal0) with "<name> here".
RESPONDER = """\
import socket, struct, sys
name, port, group = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("", port))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton(group)
             + socket.inet_aton("0.0.0.0") + struct.pack("i", socket.if_nametoindex("shoal0")))
while True:
    data, addr = s.recvfrom(2048)
    if data.startswith(b"who's there?"):
        s.sendto(f"{name} here (heard {data.decode()!r})".encode(), addr)
"""

# Asks once at each destination and prints the answers that come back within a second.
ASKER = """\
import socket, sys, time
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
for dst in sys.argv[2:]:
    s.sendto(f"who's there? (to {dst})".encode(), (dst, port))
    print(f"  alice -> {dst}:{port}  who's there?", flush=True)
    deadline = time.monotonic() + 1.0
    while (left := deadline - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            data, addr = s.recvfrom(2048)
        except socket.timeout:
            break
        print(f"     <- {addr[0]:>12}  {data.decode()}", flush=True)
"""


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def main() -> int:
    why = can_run()
    if why:
        print(f"lan_demo: {why}; run it as root", file=sys.stderr)
        return 1
    with Lab("lanp") as lab:
        banner("a coordination server and three nodes on one switch, all in network \"lan\"")
        sw = lab.switch()
        srv_ns = lab.ns("srv")
        iface = lab.attach(sw, srv_ns, f"{fleet.SERVER_IP}/24")
        lab.sh(srv_ns, f"ip addr add {fleet.SERVER_IP2}/24 dev {iface}")  # NAT discovery
        server = fleet.start_server(lab, srv_ns, relay=False)
        nodes: dict[str, fleet.NodeProc] = {}
        for name, addr in NODES.items():
            ns = lab.ns(name[:4])
            lab.attach(sw, ns, f"{addr}/24")
            nodes[name] = fleet.start_node(
                lab, ns, name, server, plugins=["udp", "broadcast", "ipx"],
                networks=[("lan", "lan-party", True)],
                extra='[plugin.ipx]\nipxnet_listen = "127.0.0.1:213"\n')
        vip: dict[str, str] = {}
        for name, node in nodes.items():
            def ready(node: fleet.NodeProc = node) -> bool:
                st = node.status(lab)
                return bool(st["node"]["online"] and st["networks"]
                            and st.get("broadcast", {}).get("routes", {}).get("configured"))
            wait_until(ready, 20, what=f"{name} to log in and join")
            vip[name] = node.status(lab)["node"]["virtual_ip"]
            print(f"{name:6} {NODES[name]:>14}  overlay {vip[name]}")
        for a, na in nodes.items():
            for b in nodes:
                if a != b:
                    wait_until(lambda na=na, b=b: lab.sh(
                        na.ns, f"ping -c1 -W1 {vip[b]}", check=False).returncode == 0,
                        15, what=f"{a} to reach {b}")

        banner("1. who's there? — a broadcast and a multicast from alice, answered by unicast")
        responder = lab.write("responder.py", RESPONDER)
        asker = lab.write("asker.py", ASKER)
        for n in ("bob", "carol"):
            lab.spawn(nodes[n].ns, [PY, str(responder), n, str(PORT), GROUP], f"resp-{n}")
        time.sleep(0.5)
        print(lab.sh(nodes["alice"].ns, f"{PY} {asker} {PORT} 255.255.255.255 "
                                         f"100.127.255.255 {GROUP}").stdout.rstrip())

        banner("2. DOSBox IPX — clients on bob and carol, alice pings and broadcasts")
        for n in ("bob", "carol"):
            lab.spawn(nodes[n].ns, [*DOSBOX, "--name", n, "--reply", "--duration", "6"],
                      f"ipx-{n}")
        for n in ("bob", "carol"):
            wait_until(lambda n=n: "registered" in lab.log_text(f"ipx-{n}"), 10,
                       what=f"{n}'s IPX client to register")
        alice = lab.spawn(nodes["alice"].ns, [*DOSBOX, "--name", "alice", "--ping", "--broadcast",
                                              "anyone for DOOM?", "--ack", "--duration", "2"],
                          "ipx-alice")
        alice.wait(20)
        time.sleep(0.3)
        events = []
        for n in ("alice", "bob", "carol"):
            for line in lab.log_text(f"ipx-{n}").splitlines():
                if line.startswith("{"):
                    events.append(json.loads(line))
        for e in events:
            if e["event"] == "registered":
                print(f"  {e['name']:6} ipxnet connect 127.0.0.1 213  -> IPX node {e['node']}")
        for e in events:
            if e["event"] == "ping":
                print(f"  alice  ipxnet ping -> answered by {', '.join(e['replies'])}")
        for e in events:
            if e["event"] == "rx":
                kind = "broadcast" if e["broadcast"] else "unicast"
                print(f"  {e['name']:6} got {kind:9} from {e['src']}: {e['payload']!r}")

        banner("3. alice: shoal status --json (broadcast and ipx)")
        st = nodes["alice"].status(lab)
        ipxnet = st["ipx"]["ipxnet"]
        print(json.dumps({"broadcast": st["broadcast"],
                          "ipx": {k: ipxnet[k] for k in ("node", "listen", "bridge",
                                                          "client_count",
                                                          "remote_clients_per_node",
                                                          "counters")}}, indent=2))
        banner("stopping")
        for node in nodes.values():
            assert node.proc is not None
            rc = lab.stop(node.proc)
            print(f"{node.name}: exited {rc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
