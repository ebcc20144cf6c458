"""A local Shoal network: a coordination server with a relay, nodes behind real NATs.

Everything runs in network namespaces on this machine:

* the "internet" 203.0.113.0/24 with the coordination server (203.0.113.10/.11,
  relay on :3480);
* alice behind a port-restricted NAT, bob and carol behind symmetric NATs,
  dave on a network that blocks UDP (only TCP gets out);
* each node runs `shoal up`, logs in, joins the network "lan" and discovers
  its NAT. alice <-> bob punch through (birthday probing), bob <-> carol can't
  (two symmetric NATs) and go through the relay, dave uses the relay over TCP.

The demo prints `shoal status` and `shoal netcheck`, pings across, and tears
everything down.
"""

from __future__ import annotations

import sys
import time

from shoal.testing import fleet, natlab
from shoal.testing.netlab import Lab, can_run, wait_until

NODES = [("alice", "port-restricted"), ("bob", "symmetric"), ("carol", "symmetric"),
         ("dave", "udp-blocked")]


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def main() -> int:
    why = can_run()
    if why:
        print(f"demo: {why}; run it as root: sudo ./scripts/demo.sh", file=sys.stderr)
        return 1
    with Lab("demo") as lab:
        banner("building the internet, a coordination server with a relay, and four NAT routers")
        inet = natlab.internet(lab, serve=False)
        server = fleet.start_server(lab, inet.server_ns)
        print(f"server key {server.key}")
        nodes: dict[str, fleet.NodeProc] = {}
        sites: dict[str, natlab.Site] = {}
        for i, (name, nat) in enumerate(NODES, start=1):
            sites[name] = natlab.add_site(lab, inet, nat, i)
            nodes[name] = fleet.start_node(lab, sites[name].host_ns, name, server,
                                           networks=[("lan", "let-me-in", name == "alice")])
            print(f"{name:6} behind a {nat} NAT ({sites[name].wan_ip})")
            if name == "alice":  # the owner creates "lan" before the others join
                fleet.wait_online(lab, nodes[name])
                wait_until(lambda: nodes["alice"].status(lab)["networks"], 10, what="the network")
        t0 = time.monotonic()
        for n in nodes.values():
            fleet.wait_online(lab, n)
        vip = {n: nodes[n].status(lab)["node"]["virtual_ip"] for n in nodes}

        def all_connected() -> bool:
            return all(lab.sh(sites[a].host_ns, f"ping -c1 -W0.3 {vip[b]}",
                              check=False).returncode == 0
                       for a in nodes for b in nodes if a != b)
        wait_until(all_connected, 30, interval=0.2, what="every pair to connect")
        print(f"all {len(nodes) * (len(nodes) - 1)} directions ping each other "
              f"{time.monotonic() - t0:.1f} s after login")
        time.sleep(2)  # let direct paths take over from the relay

        for n in ("alice", "bob", "dave"):
            banner(f"{n}: shoal status")
            print(lab.shoal(nodes[n].ns, "status", "-c", str(nodes[n].config)).stdout.rstrip())
        banner("bob: shoal netcheck")
        print(lab.shoal(nodes["bob"].ns, "netcheck", "-c", str(nodes["bob"].config)).stdout.rstrip())
        for a, b in (("alice", "bob"), ("bob", "carol"), ("dave", "alice")):
            banner(f"{a} pings {b} ({vip[b]})")
            print(lab.sh(sites[a].host_ns, f"ping -c 3 -i 0.2 {vip[b]}").stdout.strip())
        banner("alice: shoal network members lan")
        print(lab.shoal(nodes["alice"].ns, "network", "members", "lan", "-c",
                        str(nodes["alice"].config)).stdout.rstrip())
        banner("stopping")
        for n, node in nodes.items():
            assert node.proc is not None
            print(f"{n}: exit code {lab.stop(node.proc)}")
    print("namespaces and processes removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
