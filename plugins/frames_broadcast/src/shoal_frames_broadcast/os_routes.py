"""Make the operating system send broadcast and multicast into the Shoal interface.

Without these routes an application's broadcast or multicast leaves by the
default route (or nowhere) and never reaches the engine; without the local
broadcast route a node does not accept the overlay's directed broadcast that
arrives from a peer (a TUN device is point-to-point, so the kernel creates
none for it). Routes on the interface vanish with it when the node stops.

* ``224.0.0.0/4 dev IFACE metric 256``: IPv4 multicast. A route of the same
  prefix the administrator made with a lower metric still wins.
* ``255.255.255.255/32 dev IFACE src VIP metric 256``: limited broadcast.
* ``broadcast BRD dev IFACE table local scope link src VIP``: the overlay's
  directed broadcast is local (accepted, and sent as a link broadcast).
* ``multicast ff00::/8 dev IFACE table local metric 255``: IPv6 multicast
  from applications that do not pick an interface. The kernel keeps an
  ``ff00::/8`` route of metric 256 in the local table for every multicast-capable
  interface and would use the first; one better metric makes it this one.
  Applications that pick an interface (``IPV6_MULTICAST_IF``, a scope id for
  link-local groups) are not affected.
"""

from __future__ import annotations

import asyncio
import fcntl
import ipaddress
import socket
import struct

from shoal_frames_broadcast.classify import directed_broadcast

SIOCGIFADDR = 0x8915
SIOCGIFNETMASK = 0x891B
ROUTE_METRIC = "256"
IPV6_MULTICAST_METRIC = "255"   # one better than the kernel's per-interface ff00::/8


def iface_ipv4(name: str) -> tuple[str, int] | None:
    """The interface's IPv4 address and prefix length, or None (no such interface/address)."""
    ifreq = struct.pack("16s16x", name.encode()[:15])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            addr = fcntl.ioctl(s.fileno(), SIOCGIFADDR, ifreq)[20:24]
            mask = fcntl.ioctl(s.fileno(), SIOCGIFNETMASK, ifreq)[20:24]
        except OSError:
            return None
    prefix = int.from_bytes(mask, "big").bit_count()
    return socket.inet_ntoa(addr), prefix


def route_commands(iface: str, address: str | None, prefix_len: int | None) -> list[list[str]]:
    """The ``ip`` commands that steer broadcast/multicast into ``iface`` (idempotent)."""
    cmds = [["ip", "link", "set", "dev", iface, "multicast", "on"],
            ["ip", "route", "replace", "224.0.0.0/4", "dev", iface, "metric", ROUTE_METRIC],
            ["ip", "-6", "route", "replace", "multicast", "ff00::/8", "dev", iface, "table",
             "local", "metric", IPV6_MULTICAST_METRIC]]
    if address is None or prefix_len is None:
        return cmds
    cmds.append(["ip", "route", "replace", "255.255.255.255/32", "dev", iface, "src", address,
                 "metric", ROUTE_METRIC])
    brd = directed_broadcast(address, prefix_len)
    if brd:
        cmds.append(["ip", "route", "replace", "broadcast", str(ipaddress.IPv4Address(brd)),
                     "dev", iface, "table", "local", "proto", "kernel", "scope", "link",
                     "src", address])
    return cmds


async def run_commands(cmds: list[list[str]]) -> list[str]:
    """Run each command; returns one line per failure (empty list: all applied)."""
    errors = []
    for cmd in cmds:
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        except OSError as e:
            errors.append(f"{' '.join(cmd)}: {e}")
            continue
        _, err = await proc.communicate()
        if proc.returncode != 0:
            errors.append(f"{' '.join(cmd)}: {err.decode(errors='replace').strip()}")
    return errors
