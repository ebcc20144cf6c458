"""The WSS transport end to end: real `shoal` processes, real NAT routers, real tinyproxy.

World (one lab for the module)::

    server 203.0.113.10 (relay UDP/TCP :3480, wss :443) + 203.0.113.11 (control :443)
    proxy  203.0.113.30:8888 (tinyproxy, CONNECT to port 443 only)
    web    behind a router that lets out only TCP to the proxy (no UDP, no other TCP)
    pub    public address, no NAT          plugins udp, relay, ice
    port   port-restricted NAT             plugins udp, relay, wss, ice

* ``web`` logs in through the proxy, reaches its peers over the WSS relay, and
  ``status --json`` says ``"transport": "wss"``; stopping tinyproxy marks the
  paths down, starting it again brings them back without restarting the node.
* ``port`` talks to ``pub`` directly over UDP; when its router starts dropping
  UDP, it moves to a relayed path, and a 10/s ping loses at most 3 s.
"""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from shoal.testing import fleet, natlab
from shoal.testing.netlab import SHOAL, Lab, can_run, wait_until

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(can_run() is not None, reason=f"netns lab: {can_run()}")]

SERVER_IP, CONTROL = "203.0.113.10", "203.0.113.11:443"
PROXY_IP, PROXY_PORT = "203.0.113.30", 8888
ALL = ["udp", "relay", "wss", "ice"]


def server_config(lab: Lab) -> str:
    return str(lab.write("server.toml", f'''state_dir = "{lab.dir}/server"
listen = "{CONTROL}"
discovery = ["{SERVER_IP}:3478", "{SERVER_IP}:3479", "203.0.113.11:3478", "203.0.113.11:3479"]
plugins = ["relay", "wss"]
[plugin.relay]
listen_udp = "{SERVER_IP}:3480"
listen_tcp = "{SERVER_IP}:3480"
[plugin.wss]
listen = "{SERVER_IP}:443"
'''))


def tinyproxy_config(lab: Lab) -> str:
    return str(lab.write("tinyproxy.conf", f"""User nobody
Group nogroup
Port {PROXY_PORT}
Listen {PROXY_IP}
Timeout 600
Allow 203.0.113.0/24
ConnectPort 443
DisableViaHeader Yes
"""))


def only_the_proxy(site: natlab.Site) -> str:
    """Router rules: from the LAN only TCP to the proxy leaves; nothing else, either way."""
    return (f"table ip webonly {{\n"
            f"  chain forward {{\n"
            f"    type filter hook forward priority filter - 20; policy drop;\n"
            f'    iifname "{site.lan_if}" ip daddr {PROXY_IP} tcp dport {PROXY_PORT} accept\n'
            f'    iifname "{site.wan_if}" ct state established,related accept\n'
            f"  }}\n"
            f"}}\n")


class World:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.inet = natlab.internet(lab, serve=False)
        cfg = server_config(lab)
        srv = self.inet.server_ns
        key = lab.shoal(srv, "server", "init", "-c", cfg).stdout.strip().splitlines()[-1]
        self.server = fleet.ServerProc(srv, cfg, key, lab.spawn(srv, [SHOAL, "server", "run",
                                                                      "-c", cfg], "server"))
        wait_until(lambda: "relay listening on wss" in lab.log_text("server"), 15,
                   what="the server's wss listener")
        self.proxy_ns = lab.ns("px")
        lab.attach(self.inet.switch_ns, self.proxy_ns, f"{PROXY_IP}/24")
        self.proxy_conf = tinyproxy_config(lab)
        self.proxy: subprocess.Popen[bytes] | None = None
        self.start_proxy()
        self.nodes: dict[str, tuple[fleet.NodeProc, natlab.Site]] = {}
        self.add("pub", "none", 1, ["udp", "relay", "ice"], create=True)
        fleet.wait_online(lab, self.nodes["pub"][0], timeout=30)
        self.add("port", "port-restricted", 3, ALL)
        web_site = self.add("web", "port-restricted", 4, ALL,
                            extra=f'[plugin.wss]\nproxy = "http://{PROXY_IP}:{PROXY_PORT}"\n',
                            before_start=lambda s: lab.sh(s.router_ns, "nft -f " + str(
                                lab.write("webonly.nft", only_the_proxy(s)))))
        self.web_site = web_site
        for node, _ in self.nodes.values():
            fleet.wait_online(lab, node, timeout=40)

    def start_proxy(self) -> None:
        self.proxy = self.lab.spawn(self.proxy_ns, ["tinyproxy", "-d", "-c", self.proxy_conf],
                                    "tinyproxy")
        wait_until(lambda: self.lab.sh(self.proxy_ns, f"ss -ltn 'sport = :{PROXY_PORT}'"
                                       ).stdout.count("LISTEN"), 10, what="tinyproxy")

    def stop_proxy(self) -> None:
        assert self.proxy is not None
        self.lab.stop(self.proxy)   # by PID
        self.proxy = None

    def add(self, name: str, nat: str, index: int, plugins: list[str], create: bool = False,
            extra: str = "", before_start=None) -> natlab.Site:
        site = natlab.add_site(self.lab, self.inet, nat, index)
        if before_start is not None:
            before_start(site)
        cfg = fleet.node_config(self.lab, name, self.server.key, plugins,
                                [("mesh", "secret", create)], extra)
        cfg.write_text(cfg.read_text().replace(f"{SERVER_IP}:{fleet.CONTROL_PORT}", CONTROL))
        node = fleet.NodeProc(name, site.host_ns, cfg)
        node.proc = self.lab.spawn(site.host_ns, [SHOAL, "up", "-c", str(cfg)], name)
        self.nodes[name] = (node, site)
        return site

    def vip(self, name: str) -> str:
        node, _ = self.nodes[name]
        return wait_until(lambda: node.status(self.lab)["node"]["virtual_ip"], 15,
                          what=f"{name}'s address")  # type: ignore[no-any-return]

    def ping(self, a: str, b: str, wait: float = 1.0) -> bool:
        _, site = self.nodes[a]
        return self.lab.sh(site.host_ns, f"ping -c1 -W{wait} {self.vip(b)}",
                           check=False).returncode == 0

    def peer(self, a: str, b: str) -> dict:
        node, _ = self.nodes[a]
        p = node.peer(self.lab, b)
        assert p is not None, f"{a} does not know {b}"
        return p


@pytest.fixture(scope="module")
def world():
    with Lab("wss") as lab:
        yield World(lab)


def test_node_behind_a_connect_proxy_goes_over_wss(world):
    lab = world.lab
    web, _ = world.nodes["web"]
    # the router really lets nothing else out
    r = lab.sh(world.web_site.host_ns, f"ping -c1 -W1 {SERVER_IP}", check=False)
    assert r.returncode != 0
    for peer in ("pub", "port"):   # port reaches web over a relay whatever its UDP does
        wait_until(lambda peer=peer: world.ping("web", peer) and world.ping(peer, "web"), 30,
                   what=f"pings web <-> {peer}")
        p = world.peer("web", peer)
        assert (p["path"], p["transport"]) == ("relay", "wss"), p
    st = web.status(lab)
    assert st["node"]["online"] and st["wss"]["ready"] and st["wss"]["proxy"].endswith(":8888")
    pid = web.proc.pid

    world.stop_proxy()
    wait_until(lambda: all(world.peer("web", n)["path"] == "none" for n in ("pub", "port")), 30,
               interval=0.5, what="the wss paths to be marked down")
    assert not web.status(lab)["wss"]["ready"]

    world.start_proxy()
    wait_until(lambda: world.ping("web", "pub") and world.ping("port", "web"), 40,
               what="pings after the proxy came back")
    for peer in ("pub", "port"):
        wait_until(lambda peer=peer: world.peer("web", peer)["transport"] == "wss", 10,
                   what=f"web -> {peer} back on wss")
    assert web.proc.poll() is None and web.proc.pid == pid   # the same node process


def test_direct_udp_falls_back_to_a_relay_within_3_seconds_when_udp_is_blocked(world):
    lab = world.lab
    _, site = world.nodes["port"]
    wait_until(lambda: world.ping("port", "pub") and world.peer("port", "pub")["path"] == "direct",
               30, interval=0.5, what="a direct path port -> pub")
    assert world.peer("port", "pub")["transport"].startswith("udp")
    count = 100                                  # 10 s at 10/s
    pinger = subprocess.Popen(["ip", "netns", "exec", site.host_ns, "ping", "-n", "-i", "0.1",
                               "-c", str(count), "-W", "1", world.vip("pub")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(3)
        lab.sh(site.router_ns, "nft add table ip cutudp; nft add chain ip cutudp f '{ type "
                               "filter hook forward priority -5; }'; nft add rule ip cutudp f "
                               "meta l4proto udp drop")
        out, _ = pinger.communicate(timeout=60)
    finally:
        if pinger.poll() is None:
            pinger.kill()
            pinger.wait()
    received = int(re.search(r"(\d+) received", out).group(1))
    lost = count - received
    p = world.peer("port", "pub")
    print(f"UDP blocked mid-session: {lost} of {count} pings lost at 10/s "
          f"({lost / 10:.1f} s); now on {p['path']} ({p['transport']})")
    assert p["path"] == "relay" and p["transport"] in ("wss", "relay-tcp"), p
    assert lost <= 30, f"{lost} pings lost ({lost / 10:.1f} s):\n{out[-600:]}"
