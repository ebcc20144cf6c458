"""The ``shoal.`` zone as one node sees it: names -> overlay addresses (pure).

Rules it obeys:

* Every member of each of this node's networks that it knows (itself and
  every online peer the server gave it, through that network) is
  ``<node>.<network>.shoal``. Names are case-insensitive.
* ``<node>.shoal`` exists when exactly one node (one public key) of all this
  node's networks carries that name.
* Duplicate names within a network resolve predictably: the member with the
  lowest overlay IPv4 address gets ``<node>.<network>.shoal`` (addresses are
  bound to keys for good, so the holder does not change while both stay);
  the others are reached by address. ``<node>.shoal`` is then not defined.
* A label that is not a valid DNS label (after lower-casing) is left out.

The zone is rebuilt from the node's state when it changes, so joins, leaves
and renames show at once.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

ZONE = "shoal"
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")


@dataclass(frozen=True)
class Member:
    name: str
    network: str
    ipv4: str
    key: str          # public key (base64): what makes two members the same node


def _labels_ok(name: str) -> bool:
    return all(_LABEL.match(part) for part in name.split("."))


def build(members: Iterable[Member]) -> dict[str, str]:
    """Fully qualified name (lower case, no trailing dot) -> overlay IPv4 address."""
    per_net: dict[tuple[str, str], Member] = {}
    by_name: dict[str, dict[str, Member]] = {}
    for mem in members:
        name, net = mem.name.lower(), mem.network.lower()
        if not _labels_ok(name) or not _labels_ok(net) or "." in name:
            continue
        slot = (net, name)
        cur = per_net.get(slot)
        if cur is None or ipaddress.IPv4Address(mem.ipv4) < ipaddress.IPv4Address(cur.ipv4):
            per_net[slot] = mem
        by_name.setdefault(name, {})[mem.key] = mem
    out = {f"{name}.{net}.{ZONE}": m.ipv4 for (net, name), m in per_net.items()}
    for name, nodes in by_name.items():
        if len(nodes) == 1:
            out[f"{name}.{ZONE}"] = next(iter(nodes.values())).ipv4
    return out
