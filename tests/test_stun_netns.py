"""STUN interoperability with coturn in a NAT lab (real processes, nftables NAT routers).

One lab: the coordination server (discovery on 203.0.113.10/.11 x 3478/3479),
coturn on 203.0.113.20/.21 x 3478/3479, and one site per NAT type.

(a) coturn's ``turnutils_natdiscovery``, run inside each site against the
    Shoal server's discovery endpoints, reports the mapping and filtering
    the site's router was built with;
(b) nodes configured to classify with coturn only (``[plugin.ice] stun``,
    ``use_server_stun = false``) report their site's NAT in ``status --json``,
    and ``shoal netcheck`` names the server that told it, and an unreachable
    STUN server in one line.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
from shoal.testing import coturn, fleet, natlab
from shoal.testing.netlab import Lab, can_run, wait_until

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(can_run() is not None, reason=f"netns lab: {can_run()}"),
    pytest.mark.skipif(coturn.available() is not None, reason=str(coturn.available())),
]

EIM, ADM, APDM = "endpoint-independent", "address-dependent", "address-and-port-dependent"
EXPECTED = {"none": (EIM, EIM), "full-cone": (EIM, EIM), "address-restricted": (EIM, ADM),
            "port-restricted": (EIM, APDM), "symmetric": (APDM, APDM)}
WORDS = {"Endpoint Independent": EIM, "Address Dependent": ADM,
         "Address and Port Dependent": APDM}


@pytest.fixture(scope="module")
def lab():
    with Lab("stn") as lab:
        inet = natlab.internet(lab, serve=False)
        server = fleet.start_server(lab, inet.server_ns, relay=False)
        turn = coturn.start(lab, inet.server_ns, inet.server_if)
        sites = {nat: natlab.add_site(lab, inet, nat, i) for i, nat in enumerate(EXPECTED, 1)}
        yield lab, inet, server, turn, sites


def natdiscovery(site: natlab.Site, server: str) -> tuple[str | None, str | None]:
    r = subprocess.run(["ip", "netns", "exec", site.host_ns, "turnutils_natdiscovery", "-m", "-f",
                        "-p", "3478", server], capture_output=True, text=True, timeout=60,
                       check=False)
    found = {kind: words for words, kind in re.findall(r"NAT with (.+?) (Mapping|Filtering)!",
                                                         r.stdout)}
    return WORDS.get(found.get("Mapping", "")), WORDS.get(found.get("Filtering", ""))


@pytest.mark.skipif(shutil.which("turnutils_natdiscovery") is None,
                    reason="needs turnutils_natdiscovery (Debian package coturn)")
def test_natdiscovery_classifies_every_site_through_the_shoal_server(lab):
    _, inet, _, _, sites = lab
    with ThreadPoolExecutor(len(sites)) as pool:
        got = dict(zip(sites, pool.map(lambda s: natdiscovery(s, inet.server_ips[0]),
                                       sites.values())))
    assert got == EXPECTED


def test_nodes_classify_their_nat_with_coturn_only(lab):
    lab_, _, server, turn, sites = lab
    unreachable = "203.0.113.99:3478"
    nodes = {}
    for nat in ("address-restricted", "port-restricted", "symmetric"):
        stun = f'["{unreachable}", "{turn.stun}"]' if nat == "symmetric" else f'["{turn.stun}"]'
        extra = f"[plugin.ice]\nstun = {stun}\nuse_server_stun = false\n"
        nodes[nat] = fleet.start_node(lab_, sites[nat].host_ns, f"n{sites[nat].index}", server,
                                      networks=[], extra=extra)
    for nat, node in nodes.items():
        st = wait_until(lambda node=node: (s := node.status(lab_))["node"]["nat"]["mapping"]
                        != "unknown" and s, 20, what=f"{node.name}'s NAT class")
        n = st["node"]["nat"]
        assert (n["mapping"], n["filtering"]) == EXPECTED[nat], (nat, n)
        assert n["server"] == turn.stun and n["public_endpoint"].startswith(sites[nat].wan_ip)
        told = next(v for v in n["stun"] if v["server"] == turn.stun)
        assert told["origin"] == "config" and told["rfc5780"] and told["reachable"]
    node = nodes["symmetric"]
    out = lab_.shoal(node.ns, "netcheck", "-c", str(node.config)).stdout
    assert f"(told by {turn.stun})" in out, out
    assert f"stun     {unreachable} (config): unreachable: no answer" in out, out
    assert re.search(rf"stun     {turn.stun} \(config\): public {sites['symmetric'].wan_ip}:\d+,"
                     rf" rtt [\d.]+ ms, mapping {APDM}, filtering {APDM}", out), out
    assert "203.0.113.10:3478" not in out  # the coordination server's endpoints were not used
