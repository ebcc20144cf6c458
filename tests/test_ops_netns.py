"""End to end: the operator's view — Prometheus metrics of nodes and server, and
the admin page in a real headless Chromium.

Topology (namespaces this module creates), one switch::

    server  203.0.113.10 + .11   control :7400, relay, metrics 127.0.0.1:9465,
                                 admin page 127.0.0.1:7480 (inside its namespace)
    alice   203.0.113.21   bob 203.0.113.22   carol 203.0.113.23   network "lan"
            each with metrics on 127.0.0.1:9464 inside its own namespace

Scrapes and the browser run inside the namespaces (``ip netns exec`` for
one-shot scrapes; a thread that entered the server's namespace for WebDriver).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from prometheus_client.parser import text_string_to_metric_families
from shoal.testing import browser, netlab
from shoal.testing.fleet import SERVER_IP, SERVER_IP2, NodeProc, ServerProc, node_config
from shoal.testing.netlab import SHOAL, Lab, wait_until

_REASON = netlab.can_run()
pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(_REASON is not None, reason=f"netns lab: {_REASON}"),
]

UNDERLAY = {"alice": "203.0.113.21", "bob": "203.0.113.22", "carol": "203.0.113.23"}
NODE_METRICS = "127.0.0.1:9464"
SERVER_METRICS = "127.0.0.1:9465"
ADMIN = "127.0.0.1:7480"

SCRAPE = """\
import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode(), end="")
"""


@dataclass
class Env:
    lab: Lab
    server: ServerProc
    nodes: dict[str, NodeProc]
    vips: dict[str, str] = field(default_factory=dict)


def scrape(lab: Lab, ns: str, listen: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Samples of one scrape, parsed by prometheus-client's own text parser."""
    r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", SCRAPE,
                        f"http://{listen}/metrics"], capture_output=True, text=True, timeout=60,
                       check=False)
    assert r.returncode == 0, r.stderr
    out = {}
    for fam in text_string_to_metric_families(r.stdout):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def peer_sample(samples: dict, name: str, peer: str) -> float:
    hits = [v for (n, labels), v in samples.items()
            if n == name and dict(labels).get("peer") == peer]
    assert len(hits) == 1, (name, peer, hits)
    return hits[0]


def ping(lab: Lab, ns: str, dst: str, count: int = 3) -> bool:
    r = lab.sh(ns, f"ping -n -q -c {count} -i 0.2 -W 1 -s 500 {dst}", check=False, timeout=15)
    return r.returncode == 0


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with Lab("ops") as lab:
        sw = lab.switch()
        srv = lab.ns("srv")
        iface = lab.attach(sw, srv, f"{SERVER_IP}/24")
        lab.sh(srv, f"ip addr add {SERVER_IP2}/24 dev {iface}")
        cfg = lab.write("server.toml", f'''state_dir = "{lab.dir}/server"
listen = "{SERVER_IP}:7400"
discovery = ["{SERVER_IP}:3478", "{SERVER_IP}:3479", "{SERVER_IP2}:3478", "{SERVER_IP2}:3479"]
plugins = ["relay"]
[metrics]
listen = "{SERVER_METRICS}"
[admin]
listen = "{ADMIN}"
[plugin.relay]
listen_udp = "{SERVER_IP}:3480"
listen_tcp = "{SERVER_IP}:3480"
''')
        key = lab.shoal(srv, "server", "init", "-c", str(cfg)).stdout.strip().splitlines()[-1]
        proc = lab.spawn(srv, [SHOAL, "server", "run", "-c", str(cfg)], "server")
        wait_until(lambda: "coordination server listening" in lab.log_text("server"), 60,
                   what="the server to listen")
        server = ServerProc(srv, cfg, key, proc)
        nodes = {}
        for i, (name, addr) in enumerate(UNDERLAY.items()):
            ns = lab.ns(name[:3])
            lab.attach(sw, ns, f"{addr}/24")
            conf = node_config(lab, name, key, ["udp", "relay", "ice"],
                               [("lan", "secret", i == 0)],
                               extra=f'[metrics]\nlisten = "{NODE_METRICS}"\n')
            nodes[name] = NodeProc(name, ns, conf)
            nodes[name].proc = lab.spawn(ns, [SHOAL, "up", "-c", str(conf)], name)
            if i == 0:  # the owner creates "lan" before the others join it
                wait_until(lambda n=nodes[name]: n.status(lab)["networks"], 60,
                           what="alice to create lan")
        e = Env(lab, server, nodes)
        for n in nodes.values():
            e.vips[n.name] = wait_until(
                lambda n=n: (s := n.status(lab))["node"]["online"] and s["node"]["virtual_ip"],
                60, what=f"{n.name} to log in")
        try:
            yield e
        finally:
            for n in ("server", *nodes):
                log = lab.log_text(n)
                if "Traceback" in log:
                    sys.stderr.write(f"--- {n}.log\n{log[-4000:]}\n")


def test_node_metrics_parse_and_move_with_traffic(env: Env) -> None:
    lab, alice = env.lab, env.nodes["alice"]
    for a, b in itertools.permutations(UNDERLAY, 2):
        wait_until(lambda a=a, b=b: ping(lab, env.nodes[a].ns, env.vips[b], 1), 60,
                   what=f"{a} -> {b} over the overlay")
    before = scrape(lab, alice.ns, NODE_METRICS)
    assert before[("shoal_node_online", ())] == 1
    assert peer_sample(before, "shoal_peer_online", "bob") == 1
    path = [dict(labels) for (n, labels), v in before.items()
            if n == "shoal_peer_path_info" and dict(labels)["peer"] == "bob" and v == 1]
    assert len(path) == 1 and path[0]["path"] == "direct", path
    assert peer_sample(before, "shoal_peer_handshakes_total", "bob") >= 1
    # the side that initiated the handshake measured its round trip
    rtts = [v for (n, labels), v in before.items() if n == "shoal_peer_rtt_seconds"
            and dict(labels)["peer"] == "bob"]
    rtts += [v for (n, labels), v in scrape(lab, env.nodes["bob"].ns, NODE_METRICS).items()
             if n == "shoal_peer_rtt_seconds" and dict(labels)["peer"] == "alice"]
    assert rtts and all(v >= 0 for v in rtts), rtts
    assert ping(lab, alice.ns, env.vips["bob"], 5)
    after = scrape(lab, alice.ns, NODE_METRICS)
    for name in ("shoal_peer_tx_bytes_total", "shoal_peer_rx_bytes_total"):
        # five 500-byte echo requests out, five replies back (528 bytes of IPv4 each)
        assert peer_sample(after, name, "bob") - peer_sample(before, name, "bob") >= 5 * 528
    for name in ("shoal_peer_tx_packets_total", "shoal_peer_rx_packets_total"):
        assert peer_sample(after, name, "bob") - peer_sample(before, name, "bob") >= 5
    assert ("shoal_drops_total", (("reason", "malformed"),)) in after
    assert after[("shoal_relay_client_ready", ())] == 1       # the relay plugin's figures


def test_server_metrics_parse_and_move_with_logins(env: Env) -> None:
    lab = env.lab
    s = scrape(lab, env.server.ns, SERVER_METRICS)
    assert s[("shoal_server_nodes_online", ())] == 3
    assert s[("shoal_server_networks", ())] == 1
    assert s[("shoal_server_members", (("status", "active"),))] == 3
    assert s[("shoal_server_logins_total", ())] >= 3
    assert s[("shoal_server_presence_fanout_seconds_count", (("event", "login"),))] >= 3
    store_calls = {dict(labels)["op"]: v for (n, labels), v in s.items()
                   if n == "shoal_server_store_seconds_count"}
    assert sum(store_calls.values()) >= 3, store_calls   # three new nodes at least
    assert ("shoal_relay_forwarded_bytes_total", ()) in s
    # a node that restarts logs in again: the counters follow
    carol = env.nodes["carol"]
    assert carol.proc is not None
    lab.stop(carol.proc)
    wait_until(lambda: scrape(lab, env.server.ns, SERVER_METRICS)[
        ("shoal_server_nodes_online", ())] == 2, 30, what="the server to count carol offline")
    carol.proc = lab.spawn(carol.ns, [SHOAL, "up", "-c", str(carol.config)], "carol")
    wait_until(lambda: carol.status(lab)["node"]["online"], 60, what="carol to log in again")
    s2 = scrape(lab, env.server.ns, SERVER_METRICS)
    assert s2[("shoal_server_logins_total", ())] == s[("shoal_server_logins_total", ())] + 1
    assert s2[("shoal_server_presence_fanout_seconds_count", (("event", "logout"),))] >= \
        s[("shoal_server_presence_fanout_seconds_count", (("event", "logout"),))] + 1
    assert s2[("shoal_server_nodes_online", ())] == 3


ROWS_JS = """return Array.from(document.querySelectorAll('tr[data-node]'))
  .map(r => [r.dataset.node, r.dataset.state, r.innerText]);"""


@pytest.mark.skipif(browser.missing() is not None, reason=f"browser: {browser.missing()}")
def test_admin_page_in_chromium(env: Env) -> None:
    lab, srv = env.lab, env.server
    for n in env.nodes.values():   # every member online (a test before may have restarted one)
        wait_until(lambda n=n: n.status(lab)["node"]["online"], 60, what=f"{n.name} online")
    token = lab.shoal(srv.ns, "server", "admin-token", "-c", str(srv.config)
                      ).stdout.strip().splitlines()[-1]
    host, port = ADMIN.split(":")
    b = browser.Browser(lab, srv.ns)
    try:
        # Without the token: the sign-in form only, and the data endpoints refuse.
        b.get(f"http://{ADMIN}/")
        page = b.source()
        assert 'name="token"' in page and "alice" not in page and env.vips["bob"] not in page
        for path in ("/api/state", "/events", "/admin.js"):
            code, _, body = b.http.request(host, int(port), "GET", path)
            assert code == 401 and b"alice" not in body, (path, code)
        code, _, _ = b.http.request(host, int(port), "GET", "/api/state",
                                    headers={"Authorization": "Bearer " + "x" * 43})
        assert code == 401
        # Signed in: every member, its address, online, NAT type, then its paths.
        b.type("#token", token)
        b.click("button[type=submit]")

        def rows() -> dict[str, tuple[str, str]]:
            return {name: (state, text) for name, state, text in b.script(ROWS_JS)}

        wait_until(lambda: set(rows()) == set(UNDERLAY)
                   and all(s == "online" for s, _ in rows().values()), 60,
                   what="every member online on the admin page")
        for name, (_, text) in rows().items():
            assert env.vips[name] in text, (name, text)
        wait_until(lambda: all("direct" in t and "endpoint-independent" in t
                               for _, t in rows().values()), 60,
                   what="NAT types and direct paths on the admin page")
        # An action from the page: approve a pending member (the script sends the CSRF value).
        alice, carol = env.nodes["alice"], env.nodes["carol"]
        lab.shoal(alice.ns, "network", "create", "club", "--password", "pw", "--mode",
                  "approval", "-c", str(alice.config))
        r = lab.shoal(carol.ns, "network", "join", "club", "--password", "pw", "-c",
                      str(carol.config), check=False)
        assert r.returncode != 0 and "approval" in r.stderr, r.stderr
        wait_until(lambda: "Approve carol" in b.script("return document.body.innerText;"), 30,
                   what="carol pending in club on the admin page")
        b.click('button[id^="approve-"]')
        wait_until(lambda: "carol approved in club" in b.script(
            "return document.getElementById('notice').innerText;"), 30,
            what="the page to confirm the approval")
        nets = json.loads(lab.shoal(carol.ns, "network", "list", "--json", "-c",
                                    str(carol.config)).stdout)
        assert {n["name"]: n["role"] for n in nets}.get("club") == "member", nets
        # A node stops: the page shows it offline within a few seconds, without a reload.
        bob = env.nodes["bob"]
        assert bob.proc is not None
        marker = b.script("window.__same_page = 1; return 1;")
        bob.proc.send_signal(signal.SIGTERM)          # clock starts as bob is told to stop
        took = browser.wait_for(lambda: rows()["bob"][0] == "offline", 15,
                                what="bob shown offline")
        lab.stop(bob.proc)
        print(f"admin page: bob shown offline {took:.1f} s after SIGTERM")
        if os.environ.get("SHOAL_TEST_SCREENSHOT"):
            b.screenshot(os.environ["SHOAL_TEST_SCREENSHOT"])
        assert b.script("return window.__same_page || 0;") == marker   # live update, no reload
        assert rows()["alice"][0] == "online"
    finally:
        b.close()
        bob = env.nodes["bob"]
        if bob.proc is not None and bob.proc.poll() is not None:
            bob.proc = lab.spawn(bob.ns, [SHOAL, "up", "-c", str(bob.config)], "bob")
