"""The gateway's nftables rules, loaded by real nft into a namespace and exercised.

Topology: ``ovl`` plays the overlay (a veth named like the Shoal interface on the
gateway side) with a member address and a non-member address; the gateway
forwards into its LANs 192.168.50.0/24 (approved) and 192.168.60.0/24 (not
approved)::

    ovl 100.64.0.2 (member), 100.64.0.9 (no member) --- gw "shoal0" 100.64.0.1/10
    gw 192.168.50.1 --- lan50 .10        gw 192.168.60.1 --- lan60 .10
"""

from __future__ import annotations

import ipaddress
import subprocess

import pytest
from shoal.routing.forwarding import Served, ruleset, table_name
from shoal.testing import netlab
from shoal.testing.netlab import Lab

_REASON = netlab.can_run()
pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(_REASON is not None, reason=f"netns lab: {_REASON}"),
]


def test_forwards_only_members_into_approved_prefixes_and_removes_cleanly() -> None:
    with Lab("fwd") as lab:
        gw, ovl, lan50, lan60 = (lab.ns(n) for n in ("gw", "ovl", "l50", "l60"))
        ovl_if = f"{lab.prefix}o"[:15]
        subprocess.run(["ip", "link", "add", "shoal0", "netns", gw, "type", "veth", "peer",
                        "name", ovl_if, "netns", ovl], check=True)
        lab.sh(gw, "ip addr add 100.64.0.1/10 dev shoal0 && ip link set shoal0 up")
        lab.sh(ovl, f"ip addr add 100.64.0.2/10 dev {ovl_if} && "
                    f"ip addr add 100.64.0.9/10 dev {ovl_if} && ip link set {ovl_if} up && "
                    "ip route add 192.168.0.0/16 via 100.64.0.1")
        for host, net in ((lan50, 50), (lan60, 60)):
            lab.link(gw, f"192.168.{net}.1/24", host, f"192.168.{net}.10/24")
            lab.sh(host, f"ip route add default via 192.168.{net}.1")
        lab.sh(gw, "sysctl -qw net.ipv4.ip_forward=1")

        def reaches(src: str, dst: str) -> bool:
            return lab.sh(ovl, f"ping -n -q -c 1 -W 1 -I {src} {dst}", check=False,
                          timeout=10).returncode == 0

        # without the gateway's table the kernel forwards anything for anyone
        assert reaches("100.64.0.9", "192.168.50.10") and reaches("100.64.0.9", "192.168.60.10")
        served = [Served(ipaddress.IPv4Network("192.168.50.0/24"), "site", False,
                         ("100.64.0.2",))]
        rules = lab.write("rules.nft", ruleset("shoal0", served))
        lab.sh(gw, f"nft -f {rules}")
        lab.sh(gw, f"nft -f {rules}")   # loading again replaces the table, no duplicates
        assert reaches("100.64.0.2", "192.168.50.10")
        assert not reaches("100.64.0.9", "192.168.50.10"), "a non-member got through"
        assert not reaches("100.64.0.2", "192.168.60.10"), "forwarded outside approved prefixes"
        assert lab.sh(gw, "nft list ruleset").stdout.count("chain forward") == 1
        lab.sh(gw, f"nft delete table ip {table_name('shoal0')}")
        assert reaches("100.64.0.9", "192.168.50.10")
