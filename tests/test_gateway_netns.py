"""End to end: gateway routes and names between real nodes (``shoal up``) and a real server.

Topology (namespaces this module creates)::

    switch 203.0.113.0/24:  server .10/.11   alice .21 (owner)   gw .22   bob .23   eve .24
    gw's LAN 192.168.50.0/24:  gw .1 -- lan50 .10 (default route via gw)
    gw's LAN 192.168.60.0/24:  gw .1 -- lan60 .10 (no route back: needs masquerade)

Network "site" (type gateway): alice (owner), gw, bob. gw's config announces
192.168.50.0/24; 192.168.60.0/24 is announced from the command line with
masquerade. Network "other": gw and eve only. eve is outside "site".
Every node runs the ``dns`` plugin and answers for ``<node>.<network>.shoal``
at the address its status reports as ``node.dns``; queried with ``dig``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from shoal import api
from shoal.testing import fleet, netlab
from shoal.testing.fleet import NodeProc
from shoal.testing.netlab import Lab, wait_until

_REASON = netlab.can_run()
pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(_REASON is not None, reason=f"netns lab: {_REASON}"),
]

UNDERLAY = {"alice": "203.0.113.21", "gw": "203.0.113.22", "bob": "203.0.113.23",
            "eve": "203.0.113.24", "carol": "203.0.113.25"}
# Runs a command in a pseudo-terminal (as a person at a terminal would), copies what it
# prints to stdout, and passes SIGTERM on to it.
PTY_RUN = """\
import os, pty, signal, sys
pid, fd = pty.fork()
if pid == 0:
    for k in ("INVOCATION_ID", "JOURNAL_STREAM"):
        os.environ.pop(k, None)
    os.execv(sys.argv[1], sys.argv[1:])
signal.signal(signal.SIGTERM, lambda *a: os.kill(pid, signal.SIGTERM))
while True:
    try:
        data = os.read(fd, 4096)
    except OSError:
        break
    if not data:
        break
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
os.waitpid(pid, 0)
"""
LAN50, HOST50 = "192.168.50.0/24", "192.168.50.10"
LAN60, HOST60 = "192.168.60.0/24", "192.168.60.10"


@dataclass
class Env:
    lab: Lab
    nss: dict[str, str]
    server: fleet.ServerProc
    nodes: dict[str, NodeProc]
    hosts: dict[str, str]            # LAN host name -> namespace

    def __getitem__(self, name: str) -> NodeProc:
        return self.nodes[name]

    def status(self, name: str) -> dict[str, Any]:
        """Straight from the node's API socket (a file: no namespace needed, no process)."""
        n = self.nodes[name]
        assert n.proc is not None
        if n.proc.poll() is not None:
            raise AssertionError(f"{name} exited:\n{self.lab.log_text(name)[-3000:]}")
        st: dict[str, Any] = api.call(str(self.lab.dir / f"{name}.sock"), "status")
        return st

    def shoal(self, name: str, *args: str, check: bool = True) -> Any:
        n = self.nodes[name]
        return self.lab.shoal(n.ns, *args, "-c", str(n.config), check=check)

    def ping(self, name: str, dst: str, count: int = 1) -> bool:
        r = self.lab.sh(self.nodes[name].ns, f"ping -n -q -c {count} -i 0.2 -W 1 {dst}",
                        check=False, timeout=15)
        return r.returncode == 0


def _start(lab: Lab, server: fleet.ServerProc, ns: str, name: str,
           networks: list[tuple[str, str, bool]], append: str = "") -> NodeProc:
    cfg = fleet.node_config(lab, name, server.key, ["udp", "dns"], networks)
    if append:
        with cfg.open("a") as f:
            f.write(append)
    node = NodeProc(name, ns, cfg)
    node.proc = lab.spawn(ns, [netlab.SHOAL, "up", "-c", str(cfg)], name)
    return node


def _wait_online(env: Env, name: str) -> None:
    wait_until(lambda: env.status(name)["node"]["online"], 40, what=f"{name} to log in")


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with Lab("gw") as lab:
        sw = lab.switch()
        srv = lab.ns("srv")
        iface = lab.attach(sw, srv, f"{fleet.SERVER_IP}/24")
        lab.sh(srv, f"ip addr add {fleet.SERVER_IP2}/24 dev {iface}")
        nss = {}
        for name, addr in UNDERLAY.items():
            nss[name] = lab.ns(name[:3])
            lab.attach(sw, nss[name], f"{addr}/24")
        hosts = {}
        for h, gw_addr, host_addr in (("lan50", "192.168.50.1/24", f"{HOST50}/24"),
                                      ("lan60", "192.168.60.1/24", f"{HOST60}/24")):
            hosts[h] = lab.ns(h)
            lab.link(nss["gw"], gw_addr, hosts[h], host_addr)
        lab.sh(hosts["lan50"], "ip route add default via 192.168.50.1")
        server = fleet.start_server(lab, srv, relay=False)
        nodes = {"alice": _start(lab, server, nss["alice"], "alice", [])}
        e = Env(lab, nss, server, nodes, hosts)
        _wait_online(e, "alice")
        e.shoal("alice", "network", "create", "site", "--password", "pw", "--type", "gateway")
        nodes["gw"] = _start(lab, server, nss["gw"], "gw",
                             [("other", "pw2", True), ("site", "pw", False)],
                             f'routes = ["{LAN50}"]\n')
        nodes["bob"] = _start(lab, server, nss["bob"], "bob", [("site", "pw", False)])
        for n in ("gw", "bob"):
            _wait_online(e, n)
        wait_until(lambda: any(n["name"] == "other" for n in e.status("gw")["networks"]), 30,
                   what="gw to create 'other'")
        nodes["eve"] = _start(lab, server, nss["eve"], "eve", [("other", "pw2", False)])
        _wait_online(e, "eve")
        try:
            yield e
        finally:
            if os.environ.get("SHOAL_TEST_KEEP_LOGS"):
                for n in ("server", *nodes):
                    sys.stderr.write(f"--- {n}.log\n{lab.log_text(n)}\n")


def _route(env: Env, node: str, prefix: str) -> dict[str, Any] | None:
    return next((r for r in env.status(node)["routes"] if r["prefix"] == prefix), None)


def test_lan_host_reachable_only_after_approval_and_only_for_members(env: Env) -> None:
    r = wait_until(lambda: _route(env, "bob", LAN50), 40, what="bob to learn gw's route")
    assert r["state"] == "awaiting-approval" and r["gateway"] == "gw" and not r["approved"]
    wait_until(lambda: "gw" in {p["name"] for p in env.status("bob")["peers"]
                                if p["online"]}, 40, what="bob's tunnel to gw")
    assert not env.ping("bob", HOST50), "the LAN host answered before the route was approved"

    # only the owner approves
    denied = env.shoal("bob", "network", "route", "approve", "site", LAN50, check=False)
    assert denied.returncode != 0 and len(denied.stderr.strip().splitlines()) == 1
    assert "only the owner" in denied.stderr
    out = env.shoal("alice", "network", "route", "approve", "site", LAN50).stdout
    assert "approved" in out

    wait_until(lambda: (_route(env, "bob", LAN50) or {}).get("state") == "installed", 30,
               what="bob to install the route")
    wait_until(lambda: env.ping("bob", HOST50), 40, interval=0.2,
               what="bob -> LAN host ping through the gateway")
    assert (_route(env, "gw", LAN50) or {}).get("state") == "serving"
    wait_until(lambda: env.ping("alice", HOST50), 30, interval=0.2, what="alice -> LAN host")
    text = env.shoal("bob", "status").stdout
    assert f"route    {LAN50}  via gw  (site)  installed" in text

    # eve shares only "other" with gw: no route offered, and a hand-made one goes nowhere
    assert _route(env, "eve", LAN50) is None
    env.lab.sh(env["eve"].ns, f"ip route replace {LAN50} dev shoal0")
    assert not env.ping("eve", HOST50), "a node outside the network reached the LAN"
    # the gateway admits only members of "site" to its LAN
    rules = env.lab.sh(env["gw"].ns, "nft list ruleset").stdout
    assert LAN50 in rules and '"shoal0" drop' in rules


def test_masqueraded_route_added_from_the_command_line(env: Env) -> None:
    out = env.shoal("gw", "network", "route", "add", "site", LAN60, "--masquerade").stdout
    assert "waiting for the owner's approval" in out
    assert not env.ping("bob", HOST60)
    env.shoal("alice", "network", "route", "approve", "site", LAN60)
    wait_until(lambda: env.ping("bob", HOST60), 40, interval=0.2,
               what="bob -> masqueraded LAN host")
    listed = json.loads(env.shoal("bob", "network", "route", "list", "site", "--json").stdout)
    assert {(r["prefix"], r["gateway_name"], r["approved"], r["masquerade"]) for r in listed} \
        == {(LAN50, "gw", True, False), (LAN60, "gw", True, True)}
    # the gateway withdraws it: bob's kernel route goes away
    env.shoal("gw", "network", "route", "remove", "site", LAN60)
    wait_until(lambda: _route(env, "bob", LAN60) is None, 30, what="the route to go")
    wait_until(lambda: "192.168.60.0/24" not in env.lab.sh(env["bob"].ns, "ip route show").stdout,
               30, what="bob's kernel route to go")
    assert "192.168.50.0/24 dev shoal0" in env.lab.sh(env["bob"].ns, "ip route show").stdout


def test_conflicting_routes_refused_with_one_line(env: Env) -> None:
    for args, why in (((LAN50,), "already announced in 'site' by gw"),
                      (("192.168.0.0/16",), "overlaps 192.168.50.0/24"),
                      (("100.64.9.0/24",), "overlay address pool")):
        r = env.shoal("bob", "network", "route", "add", "site", *args, check=False)
        lines = r.stderr.strip().splitlines()
        assert r.returncode != 0 and len(lines) == 1 and why in lines[0], r.stderr
    # bob's own LAN (the switch) announced by gw: bob refuses to install it
    env.shoal("gw", "network", "route", "add", "site", "203.0.113.0/24")
    env.shoal("alice", "network", "route", "approve", "site", "203.0.113.0/24")
    r = wait_until(lambda: (x := _route(env, "bob", "203.0.113.0/24")) and
                   x["state"] == "refused" and x, 30, what="bob to refuse the route")
    assert "overlaps this node's own LAN 203.0.113.0/24" in r["reason"]
    assert env.ping("bob", fleet.SERVER_IP), "bob lost its own LAN"
    env.shoal("alice", "network", "route", "remove", "site", "203.0.113.0/24")


# --------------------------------------------------------------------------- names
def _dig(env: Env, node: str, server: str, name: str, qtype: str = "A") -> tuple[str, list[str]]:
    """(status, answers) of ``dig`` run in ``node``'s namespace against ``server``."""
    return _dig_from(env, env[node].ns, server, name, qtype)


def _dig_from(env: Env, ns: str, server: str, name: str, qtype: str = "A"
              ) -> tuple[str, list[str]]:
    host, port = server.rsplit(":", 1)
    r = env.lab.sh(ns, f"dig @{host} -p {port} {name} {qtype} +time=2 +tries=2",
                   check=False, timeout=20)
    status = (r.stdout.split("status: ", 1)[1].split(",", 1)[0]
              if "status: " in r.stdout else f"no answer: {r.stdout[-300:]}")
    answers = [line.split()[-1] for line in r.stdout.split(";; ANSWER SECTION:\n", 1)[-1]
               .split("\n\n", 1)[0].splitlines()] if ";; ANSWER SECTION:" in r.stdout else []
    return status, answers


def test_every_member_name_resolves_at_node_dns(env: Env) -> None:
    vips = {n: env.status(n)["node"]["virtual_ip"] for n in env.nodes}
    dns = {n: wait_until(lambda n=n: env.status(n)["node"].get("dns"), 30,
                         what=f"{n} to report node.dns") for n in env.nodes}
    assert dns["bob"] == f"{vips['bob']}:53"
    wait_until(lambda: {p["name"] for p in env.status("bob")["peers"]} >= {"alice", "gw"}, 30,
               what="bob to know every member of site")
    for member in ("alice", "gw", "bob"):
        assert _dig(env, "bob", dns["bob"], f"{member}.site.shoal") == ("NOERROR", [vips[member]])
    # over the overlay, from another member, and the IPv6 twin
    assert _dig(env, "alice", dns["bob"], "gw.site.shoal", "AAAA")[1] == \
        [env.status("gw")["node"]["virtual_ip6"]]
    assert _dig(env, "gw", dns["gw"], "eve.other.shoal") == ("NOERROR", [vips["eve"]])
    assert _dig(env, "gw", dns["gw"], "eve.shoal") == ("NOERROR", [vips["eve"]])
    # bob shares no network with eve; other names are refused, not forwarded
    assert _dig(env, "bob", dns["bob"], "eve.other.shoal")[0] == "NXDOMAIN"
    assert _dig(env, "bob", dns["bob"], "example.com")[0] == "REFUSED"
    # eve shares only "other" with gw: gw tells it nothing about "site"
    assert _dig(env, "eve", dns["gw"], "eve.other.shoal") == ("NOERROR", [vips["eve"]])
    assert _dig(env, "eve", dns["gw"], "bob.site.shoal")[0] == "NXDOMAIN"
    # a host that is no member (gw's LAN) is refused
    assert _dig_from(env, env.hosts["lan50"], dns["gw"], "gw.site.shoal")[0] == "REFUSED"


def test_name_disappears_when_its_node_leaves(env: Env) -> None:
    dns = env.status("gw")["node"]["dns"]
    assert _dig(env, "gw", dns, "eve.other.shoal")[0] == "NOERROR"
    env.shoal("eve", "network", "leave", "other")
    wait_until(lambda: _dig(env, "gw", dns, "eve.other.shoal")[0] == "NXDOMAIN", 30,
               interval=0.2, what="eve.other.shoal to disappear")
    assert _dig(env, "gw", dns, "eve.shoal")[0] == "NXDOMAIN"
    assert _dig(env, "gw", dns, "bob.site.shoal")[0] == "NOERROR"


# --------------------------------------------------------------------------- shoal up
def test_up_shows_progress_in_a_terminal_and_stays_quiet_otherwise(env: Env) -> None:
    lab = env.lab
    cfg = fleet.node_config(lab, "carol", env.server.key, ["udp"], [("site", "pw", False)])
    proc = lab.spawn(env.nss["carol"], [sys.executable, "-c", PTY_RUN, netlab.SHOAL, "up",
                                        "-c", str(cfg)], "carol")
    try:
        wait_until(lambda: "shoal: ready:" in lab.log_text("carol"), 75,
                   what="carol's progress to reach ready")
        lines = [ln.strip() for ln in lab.log_text("carol").splitlines()
                 if ln.startswith("shoal: ")]
        assert lines[0] == "shoal: interface shoal0 up"
        assert lines[1] == f"shoal: logging in to {fleet.SERVER_IP}:{fleet.CONTROL_PORT} ..."
        assert lines[2].startswith("shoal: logged in as 100.")
        assert {ln.split()[2] for ln in lines if " connected (" in ln} == {"alice", "gw", "bob"}
        assert lines[-1] == "shoal: ready: 3/3 peers connected"
        assert " INFO " not in lab.log_text("carol")  # progress replaces the routine log
    finally:
        assert lab.stop(proc) == 0
    # nodes started with output to a file (as under a service manager) print no progress
    assert "shoal: " not in lab.log_text("bob") and " INFO " in lab.log_text("bob")
