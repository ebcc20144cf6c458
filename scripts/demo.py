"""A local Shoal network in two network namespaces.

alice (198.51.100.1) and bob (198.51.100.2) each run `shoal up` with a real
TUN interface; they know each other as static peers. The demo shows `shoal
status`, pings across the tunnel both ways and tears everything down.
"""

from __future__ import annotations

import sys
import time

from shoal.testing.netlab import SHOAL, Lab, can_run, wait_until

NODES = {"alice": ("198.51.100.1", "100.64.0.1"), "bob": ("198.51.100.2", "100.64.0.2")}


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def node_config(lab: Lab, name: str) -> str:
    return f'''name = "{name}"
state_dir = "{lab.dir}/{name}"
plugins = ["udp"]
[interface]
name = "shoal0"
address = "{NODES[name][1]}/10"
[api]
socket = "{lab.dir}/{name}.sock"
[plugin.udp]
port = 41641
'''


def main() -> int:
    why = can_run()
    if why:
        print(f"demo: {why}; run it as root: sudo ./scripts/demo.sh", file=sys.stderr)
        return 1
    with Lab("demo") as lab:
        ns = {n: lab.ns(n) for n in NODES}
        lab.link(ns["alice"], f"{NODES['alice'][0]}/24", ns["bob"], f"{NODES['bob'][0]}/24")
        cfg = {n: lab.write(f"{n}.toml", node_config(lab, n)) for n in NODES}
        keys = {n: lab.shoal(ns[n], "key", "public", "-c", str(cfg[n])).stdout.strip()
                for n in NODES}
        for n in NODES:
            other = "bob" if n == "alice" else "alice"
            with open(cfg[n], "a") as f:
                f.write(f'''[[peers]]
name = "{other}"
public_key = "{keys[other]}"
endpoint = "{NODES[other][0]}:41641"
virtual_ip = "{NODES[other][1]}"
''')
        banner("starting two nodes in namespaces " + ", ".join(ns.values()))
        procs = {n: lab.spawn(ns[n], [SHOAL, "up", "-c", str(cfg[n])], n) for n in NODES}
        t0 = time.monotonic()
        wait_until(lambda: all(p["online"] for p in lab.status(ns["alice"], cfg["alice"])["peers"]),
                   15, what="the tunnel to come up")
        print(f"tunnel up in {time.monotonic() - t0:.2f} s")
        banner("alice: ping bob over the overlay")
        print(lab.sh(ns["alice"], f"ping -c 3 -i 0.2 {NODES['bob'][1]}").stdout.strip())
        banner("bob: ping back")
        print(lab.sh(ns["bob"], f"ping -c 3 -i 0.2 {NODES['alice'][1]}").stdout.strip())
        for n in NODES:
            banner(f"{n}: shoal status")
            print(lab.shoal(ns[n], "status", "-c", str(cfg[n])).stdout.rstrip())
        banner("stopping")
        for n, p in procs.items():
            print(f"{n}: exit code {lab.stop(p)}")
    print("namespaces and processes removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
