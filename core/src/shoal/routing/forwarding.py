"""The gateway's forwarding rules (nftables) and the members' kernel routes.

A gateway forwards from its Shoal interface into an approved LAN prefix only
for members of the network that approved it, and nothing else from the
Shoal interface (a member cannot use the gateway as an exit to anywhere
else). Replies and LAN-initiated traffic reach only those members. With
``masquerade`` the members' overlay sources are rewritten to the gateway's
LAN address, so LAN hosts need no route back to the overlay.

The ruleset lives in its own table (``ip shoal_gw_<interface>``) and is
replaced in one nftables transaction on every change; the base chains have
policy accept so the host's other forwarding is left alone. Note that a drop
in another table's forward chain (e.g. a host firewall) still applies.

``ruleset`` is a pure function (unit-tested); ``apply``/``remove`` run nft.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

FORWARD_SYSCTL = "/proc/sys/net/ipv4/ip_forward"


@dataclass(frozen=True)
class Served:
    """A route this node is the gateway for, with the members allowed through it."""

    prefix: ipaddress.IPv4Network
    network: str
    masquerade: bool
    members: tuple[str, ...]     # overlay IPv4 addresses


def table_name(ifname: str) -> str:
    return "shoal_gw_" + re.sub(r"[^A-Za-z0-9_]", "_", ifname)


def ruleset(ifname: str, served: Sequence[Served]) -> str:
    """The whole table, to be loaded with ``nft -f -`` (replaces any older copy)."""
    t = table_name(ifname)
    lines = [f"table ip {t} {{}}", f"delete table ip {t}", f"table ip {t} {{"]
    for i, s in enumerate(served):
        elems = f" elements = {{ {', '.join(s.members)} }};" if s.members else ""
        lines.append(f"  set m{i} {{ type ipv4_addr;{elems} }}")
    lines.append("  chain forward {")
    lines.append("    type filter hook forward priority filter; policy accept;")
    for i, s in enumerate(served):
        lines.append(f'    iifname "{ifname}" ip saddr @m{i} ip daddr {s.prefix} accept')
    lines.append(f'    iifname "{ifname}" drop')
    lines.append(f'    oifname "{ifname}" ct state established,related accept')
    for i, s in enumerate(served):
        lines.append(f'    oifname "{ifname}" ip saddr {s.prefix} ip daddr @m{i} accept')
    lines.append(f'    oifname "{ifname}" drop')
    lines.append("  }")
    if any(s.masquerade for s in served):
        lines.append("  chain postrouting {")
        lines.append("    type nat hook postrouting priority srcnat; policy accept;")
        for i, s in enumerate(served):
            if s.masquerade:
                lines.append(f'    oifname != "{ifname}" ip saddr @m{i} ip daddr {s.prefix} '
                             "masquerade")
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


async def _run(*argv: str, stdin: str | None = None) -> tuple[int, str, str]:
    try:
        p = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else None,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    except FileNotFoundError:
        return 127, "", f"{argv[0]} is not installed"
    out, err = await p.communicate(stdin.encode() if stdin is not None else None)
    return p.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace").strip()


async def apply_forwarding(ifname: str, served: Sequence[Served]) -> str | None:
    """Load the gateway's table; None when it worked, else the error line."""
    rc, _, err = await _run("nft", "-f", "-", stdin=ruleset(ifname, served))
    return None if rc == 0 else f"nftables: {err.splitlines()[-1] if err else rc}"


async def remove_forwarding(ifname: str) -> None:
    await _run("nft", "delete", "table", "ip", table_name(ifname))


def set_ip_forward(on: bool) -> bool | None:
    """Set the IPv4 forwarding switch; returns the previous value (None: cannot)."""
    try:
        with open(FORWARD_SYSCTL) as f:
            old = f.read().strip() == "1"
        if old != on:
            with open(FORWARD_SYSCTL, "w") as f:
                f.write("1" if on else "0")
        return old
    except OSError as e:
        log.warning("cannot set %s: %s", FORWARD_SYSCTL, e)
        return None


async def route_replace(prefix: ipaddress.IPv4Network, ifname: str) -> str | None:
    rc, _, err = await _run("ip", "route", "replace", str(prefix), "dev", ifname)
    return None if rc == 0 else f"ip route replace {prefix} dev {ifname}: {err}"


async def route_delete(prefix: ipaddress.IPv4Network, ifname: str) -> None:
    await _run("ip", "route", "del", str(prefix), "dev", ifname)


async def local_lans(exclude: str) -> list[ipaddress.IPv4Network]:
    """IPv4 networks of this host's interfaces (its own LANs), except ``exclude`` and lo."""
    rc, out, _ = await _run("ip", "-j", "-4", "addr", "show")
    if rc != 0:
        return []
    nets = []
    try:
        for link in json.loads(out or "[]"):
            if link.get("ifname") in (exclude, "lo"):
                continue
            for a in link.get("addr_info", []):
                net = ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}").network
                if isinstance(net, ipaddress.IPv4Network) and net.prefixlen < 32:
                    nets.append(net)
    except (ValueError, KeyError, TypeError):
        return []
    return nets
