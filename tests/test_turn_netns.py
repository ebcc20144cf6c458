"""TURN relaying through coturn in a NAT lab (real processes, nftables NAT routers).

One lab: the coordination server (no relay of its own), coturn with a shared
secret (use-auth-secret) on 203.0.113.20/.21, and three nodes whose only
relay is coturn: two behind symmetric NATs, one behind a port-restricted NAT.

(c) the two symmetric nodes connect and ping through coturn; both show the
    peer on ``"path": "relay", "transport": "turn"``;
(d) the port-restricted x symmetric pair starts on TURN and moves to a direct
    path (birthday punching), without losing the tunnel;
a node without TURN of its own, behind a symmetric NAT too, reaches a TURN
node's relayed candidate with plain UDP (ICE relay candidate); and a node
with a wrong TURN secret says so in one line in status and netcheck. A node
behind a NAT that drops all UDP reaches coturn over TLS (``turns:``, the
certificate checked against ``ca_file``) and relays through it. The
coordination server announces coturn too: a node with the ``turn`` plugin and
no TURN server or secret of its own relays through it with the REST-API
credential the server minted for its key.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from shoal.testing import coturn, fleet, natlab
from shoal.testing.netlab import Lab, can_run, wait_until
from shoal_transport_wss.pinning import ensure_certificate

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(can_run() is not None, reason=f"netns lab: {can_run()}"),
    pytest.mark.skipif(coturn.available() is not None, reason=str(coturn.available())),
]

SECRET = "lab-turn-secret"


def turn_config(secret: str = SECRET, url: str = f"turn:{coturn.COTURN_IPS[0]}:3478",
                ca_file: Path | None = None) -> str:
    ca = f'ca_file = "{ca_file}"\n' if ca_file else ""
    return f'[plugin.turn]\n{ca}[[plugin.turn.servers]]\nurl = "{url}"\nsecret = "{secret}"\n'


class World:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.inet = natlab.internet(lab, serve=False)
        self.server = fleet.start_server(lab, self.inet.server_ns, relay=False, extra=f'''\
plugins = ["turn"]
[[plugin.turn.announce]]
url = "turn:{coturn.COTURN_IPS[0]}:3478"
secret = "{SECRET}"
''')
        self.cert, key = lab.dir / "coturn.pem", lab.dir / "coturn.key"
        ensure_certificate(self.cert, key, coturn.COTURN_IPS[0])   # self-signed, for turns:
        self.turn = coturn.start(lab, self.inet.server_ns, self.inet.server_if, secret=SECRET,
                                 tls=(str(self.cert), str(key)))
        self.nodes: dict[str, fleet.NodeProc] = {}
        self.sites: dict[str, natlab.Site] = {}

    def add(self, name: str, nat: str, create: bool = False, secret: str = SECRET,
            turn: bool = True, tls: bool = False, ca_file: Path | None = None,
            configured: bool = True) -> fleet.NodeProc:
        site = natlab.add_site(self.lab, self.inet, nat, len(self.sites) + 1)
        extra = ""
        if turn and configured:
            extra = turn_config(secret, f"turns:{coturn.COTURN_IPS[0]}:{coturn.TLS_PORT}",
                                ca_file or self.cert) if tls else turn_config(secret)
        node = fleet.start_node(self.lab, site.host_ns, name, self.server,
                                plugins=["udp", "turn", "ice"] if turn else ["udp", "ice"],
                                networks=[("mesh", "secret", create)],
                                extra=extra)
        self.nodes[name], self.sites[name] = node, site
        return node

    def vip(self, name: str) -> str:
        node = self.nodes[name]
        return wait_until(lambda: node.status(self.lab)["node"]["virtual_ip"], 15,
                          what=f"{name}'s address")  # type: ignore[no-any-return]

    def allocated(self, node: fleet.NodeProc, what: str) -> tuple[dict, dict]:
        """Wait for the node's TURN allocation on coturn: (its status, the first server)."""
        fleet.wait_online(self.lab, node, timeout=30)
        st = wait_until(lambda: (s := node.status(self.lab))["turn"]["ready"] and s, 30,
                        what=what)
        assert st["turn"]["relayed"].startswith(coturn.COTURN_IPS[0] + ":"), st["turn"]
        return st, st["turn"]["servers"][0]

    def pings_both_ways(self, a: str, b: str) -> None:
        wait_until(lambda: self.ping(a, b) and self.ping(b, a), 30, interval=0.2,
                   what=f"a ping between {a} and {b}")

    def ping(self, a: str, b: str, wait: float = 0.5) -> bool:
        r = self.lab.sh(self.sites[a].host_ns, f"ping -c1 -W{wait} {self.vip(b)}", check=False)
        return r.returncode == 0


@pytest.fixture(scope="module")
def world():
    with Lab("trn") as lab:
        w = World(lab)
        w.add("sym1", "symmetric", create=True)
        fleet.wait_online(lab, w.nodes["sym1"])
        wait_until(lambda: w.nodes["sym1"].status(lab)["networks"], 30, what="the network")
        w.add("sym2", "symmetric")
        w.add("port", "port-restricted")
        for n in w.nodes.values():
            fleet.wait_online(lab, n, timeout=30)
        yield w


def test_symmetric_pair_connects_through_coturn(world):
    wait_until(lambda: world.ping("sym1", "sym2") and world.ping("sym2", "sym1"), 30,
               interval=0.2, what="a ping between the symmetric nodes")
    for a, b in (("sym1", "sym2"), ("sym2", "sym1")):
        peer = wait_until(lambda a=a, b=b: (p := world.nodes[a].peer(world.lab, b))
                          and p["transport"] == "turn" and p, 10, what=f"{a} -> {b} on turn")
        assert peer["path"] == "relay" and peer["online"], peer
        st = world.nodes[a].status(world.lab)
        turn = st["turn"]
        assert turn["ready"] and turn["relayed"].startswith(coturn.COTURN_IPS[0] + ":"), turn
        assert SECRET not in str(st)
    # coturn relayed them: its log shows the two allocations' peers
    assert "CHANNEL_BIND processed, success" in world.lab.log_text(world.turn.log)


def test_port_restricted_and_symmetric_start_on_turn_then_go_direct(world):
    wait_until(lambda: world.ping("port", "sym1") and world.ping("sym1", "port"), 30,
               interval=0.2, what="a ping between port and sym1")
    peer = wait_until(lambda: (p := world.nodes["port"].peer(world.lab, "sym1"))
                      and p["path"] == "direct" and p, 40, interval=0.5,
                      what="port -> sym1 to go direct")
    assert peer["transport"] in ("udp", "udp-punch"), peer
    log = world.lab.log_text("port")
    # the tunnel came up on TURN, then ICE moved it to a direct path (birthday punching)
    on_turn = re.search(r"peer sym1: path \S+ \S+ \(\w+\) -> turn \S+ \(relay\)", log)
    to_direct = re.search(r"peer sym1: path turn \S+ \(relay\) -> udp\S* \S+ \(direct\)", log)
    assert on_turn and to_direct and on_turn.start() < to_direct.start(), log[-3000:]
    assert world.ping("port", "sym1") and world.ping("sym1", "port")


def test_a_node_without_turn_reaches_the_relayed_candidate_with_plain_udp(world):
    plain = world.add("plain", "symmetric", turn=False)
    fleet.wait_online(world.lab, plain, timeout=30)
    wait_until(lambda: world.ping("plain", "sym1") and world.ping("sym1", "plain"), 30,
               interval=0.2, what="a ping between plain and sym1")
    peer = wait_until(lambda: (p := plain.peer(world.lab, "sym1")) and p["path"] == "relay"
                      and p, 10, what="plain -> sym1 on sym1's relayed address")
    relayed = world.nodes["sym1"].status(world.lab)["turn"]["relayed"]
    assert peer["transport"] == "udp" and peer["endpoint"] == relayed, (peer, relayed)
    back = world.nodes["sym1"].peer(world.lab, "plain")
    assert back["transport"] == "turn" and back["path"] == "relay", back


def test_wrong_secret_is_one_line_in_status_and_netcheck(world):
    bad = world.add("bad", "full-cone", secret="not-the-secret")
    line = "401 Unauthorized: wrong username or password (or shared secret)"
    st = wait_until(lambda: (s := bad.status(world.lab))["turn"]["servers"][0]["error"] and s,
                    20, what="the TURN error in status")
    assert st["turn"]["servers"][0]["error"] == line and not st["turn"]["ready"]
    out = world.lab.shoal(bad.ns, "netcheck", "-c", str(bad.config)).stdout
    assert f"turn     {coturn.COTURN_IPS[0]}:3478 (udp): {line}" in out, out
    assert "not-the-secret" not in world.lab.log_text("bad")


def test_a_node_that_cannot_send_udp_relays_over_turn_tls(world):
    node = world.add("tls", "udp-blocked", tls=True)
    st, server = world.allocated(node, "a TURN allocation over TLS")
    assert server["transport"] == "tls" and not server.get("error"), st["turn"]
    world.pings_both_ways("tls", "sym1")
    peer = node.peer(world.lab, "sym1")
    assert peer["transport"] == "turn" and peer["path"] == "relay", peer
    assert "TLS" in world.lab.log_text(world.turn.log)


def test_turn_tls_with_a_certificate_it_cannot_verify_is_one_line(world):
    other = world.lab.dir / "other-ca.pem"
    ensure_certificate(other, world.lab.dir / "other-ca.key", coturn.COTURN_IPS[0])
    node = world.add("badca", "udp-blocked", tls=True, ca_file=other)
    st = wait_until(lambda: (s := node.status(world.lab))["turn"]["servers"][0]["error"] and s,
                    30, what="the TLS error in status")
    error = st["turn"]["servers"][0]["error"]
    print(f"TURN over TLS with the wrong CA: {error}")
    assert error.startswith("TLS certificate not trusted (self-signed certificate)"), error
    assert "ca_file" in error and "\n" not in error and not st["turn"]["ready"], error
    assert "Traceback" not in world.lab.log_text("badca")


def test_a_node_without_a_turn_secret_uses_the_server_announced_one(world):
    node = world.add("ann", "symmetric", configured=False)
    st, server = world.allocated(node, "an allocation on the announced TURN server")
    assert server["announced"] and server["selected"] and not server.get("error"), server
    world.pings_both_ways("ann", "sym2")
    assert node.peer(world.lab, "sym2")["transport"] == "turn"
    out = world.lab.shoal(node.ns, "netcheck", "-c", str(node.config)).stdout
    assert f"turn     {coturn.COTURN_IPS[0]}:3478 (udp, announced by the server): relayed" \
        in out, out
    assert SECRET not in str(st) and SECRET not in world.lab.log_text("ann") and SECRET not in out
