"""Which announced LAN prefixes may be routed, and from whom packets inside them are accepted.

Rules it obeys (pure functions, no sockets, no OS calls):

* A routed prefix is an IPv4 network in canonical form (host bits zero) that
  is an ordinary unicast LAN: never the default route, never the overlay pool,
  loopback, link-local, multicast or the limited broadcast address.
* Within one network an approved prefix may not overlap another approved
  prefix (a packet must have exactly one gateway). The server checks this on
  announcement and on approval.
* On a member, an approved prefix is refused when it overlaps one of the
  member's own LANs (directly connected networks: routing it would cut the
  member off from its own LAN) or a prefix already accepted from another
  network with a different gateway. Networks are taken in name order, so the
  outcome is the same on every start.
* A packet that arrives through a tunnel with a source address inside a
  routed prefix is accepted only from that prefix's gateway (``SourceCheck``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

OVERLAY = ipaddress.IPv4Network("100.64.0.0/10")
_RESERVED = [
    (ipaddress.IPv4Network("127.0.0.0/8"), "loopback"),
    (ipaddress.IPv4Network("169.254.0.0/16"), "link-local"),
    (ipaddress.IPv4Network("224.0.0.0/4"), "multicast"),
    (ipaddress.IPv4Network("240.0.0.0/4"), "reserved"),
    (ipaddress.IPv4Network("0.0.0.0/8"), "'this network'"),
]


class RouteRefused(ValueError):
    """One readable sentence saying why a prefix cannot be routed."""


def parse_prefix(value: str, overlay: str | ipaddress.IPv4Network = OVERLAY
                 ) -> ipaddress.IPv4Network:
    """The canonical network for ``value``, or ``RouteRefused`` naming the problem."""
    try:
        net = ipaddress.ip_network(value.strip(), strict=True)
    except ValueError as e:
        if "has host bits set" in str(e):
            fixed = ipaddress.ip_network(value.strip(), strict=False)
            raise RouteRefused(f"{value} has host bits set; did you mean {fixed}?") from None
        raise RouteRefused(f"{value!r} is not a network prefix (e.g. 192.168.50.0/24)") from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise RouteRefused(f"{net}: only IPv4 prefixes can be routed")
    if net.prefixlen == 0:
        raise RouteRefused(f"{net} is the default route; only LAN prefixes can be routed")
    pool = ipaddress.IPv4Network(overlay) if not isinstance(overlay, ipaddress.IPv4Network) \
        else overlay
    if net.overlaps(pool):
        raise RouteRefused(f"{net} overlaps the overlay address pool {pool}")
    for reserved, what in _RESERVED:
        if net.overlaps(reserved):
            raise RouteRefused(f"{net} overlaps the {what} block {reserved}")
    if net.prefixlen == 32 and net.network_address == ipaddress.IPv4Address("255.255.255.255"):
        raise RouteRefused(f"{net} is the broadcast address")
    return net


@dataclass(frozen=True)
class Route:
    """An approved route as a member sees it."""

    network: str
    prefix: ipaddress.IPv4Network
    gateway: str            # the gateway's public key (base64)


def overlapping(prefix: ipaddress.IPv4Network, others: Iterable[ipaddress.IPv4Network]
                ) -> ipaddress.IPv4Network | None:
    """The first of ``others`` that overlaps ``prefix`` (None when none does)."""
    for o in others:
        if prefix.overlaps(o):
            return o
    return None


@dataclass(frozen=True)
class Decision:
    route: Route
    accepted: bool
    reason: str = ""


def decide(routes: Iterable[Route], own_key: str,
           local_lans: Sequence[ipaddress.IPv4Network]) -> list[Decision]:
    """Which approved routes a member installs (see the rules above).

    Routes whose gateway is this node are left out (the gateway serves them,
    it does not route them to itself). The same prefix from the same gateway
    in several networks is one route, accepted once.
    """
    out: list[Decision] = []
    accepted: list[Route] = []
    for r in sorted(routes, key=lambda r: (r.network, r.prefix)):
        if r.gateway == own_key:
            continue
        lan = overlapping(r.prefix, local_lans)
        if lan is not None:
            out.append(Decision(r, False, f"route {r.prefix} (network {r.network}) overlaps "
                                          f"this node's own LAN {lan}; not installed"))
            continue
        clash = next((a for a in accepted if a.prefix.overlaps(r.prefix)
                      and (a.prefix != r.prefix or a.gateway != r.gateway)), None)
        if clash is not None:
            out.append(Decision(r, False, f"route {r.prefix} (network {r.network}) overlaps "
                                          f"{clash.prefix} from network {clash.network}; "
                                          "not installed"))
            continue
        accepted.append(r)
        out.append(Decision(r, True))
    return out


class SourceCheck:
    """Prefixes a peer may send from besides its own overlay address.

    ``allows(src)`` is called on the receive path for packets whose source is
    not the peer's overlay address, so it is a short scan over (network, mask)
    integers: a gateway has a handful of prefixes, other peers none.
    """

    __slots__ = ("_nets",)

    def __init__(self, prefixes: Iterable[ipaddress.IPv4Network] = ()) -> None:
        self._nets = tuple((int(p.network_address), int(p.netmask)) for p in prefixes)

    def __bool__(self) -> bool:
        return bool(self._nets)

    def allows(self, src: bytes) -> bool:
        a = int.from_bytes(src, "big")
        for net, mask in self._nets:
            if a & mask == net:
                return True
        return False


class PrefixTable:
    """Longest-prefix match from a destination IPv4 address to a value (a gateway peer)."""

    __slots__ = ("_entries",)

    def __init__(self, entries: Iterable[tuple[ipaddress.IPv4Network, object]] = ()) -> None:
        rows = sorted(entries, key=lambda e: -e[0].prefixlen)
        self._entries = tuple((int(p.network_address), int(p.netmask), v) for p, v in rows)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def lookup(self, dst: bytes) -> object | None:
        a = int.from_bytes(dst, "big")
        for net, mask, v in self._entries:
            if a & mask == net:
                return v
        return None
