"""The coordination server's book of gateway routes, without sockets.

Rules it obeys (ARCHITECTURE §3, gateway networks; prefix rules in
``shoal.routing.rules``):

* Only an active member of a network of type ``gateway`` announces routes, and
  only for itself: the announcing member is the route's gateway. A prefix has
  at most one gateway per network; announcing it again changes only its
  masquerade flag and keeps its approval.
* A route announced by the owner is approved at once (the owner is who would
  approve it); any other announcement waits for ``approve`` by the owner.
* An approved prefix may not overlap another approved prefix of the same
  network; an announcement that overlaps an approved prefix of another
  gateway is refused at once.
* The gateway or the owner removes a route; a gateway that leaves or is
  evicted takes its routes with it; deleting a network deletes its routes.

Every change is written through the ``Store`` (table ``routes``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from shoal.control import messages as m
from shoal.routing.rules import RouteRefused, parse_prefix
from shoal.server.store import RouteRecord, Store


class RouteError(Exception):
    """A route operation the rules refuse: ``code`` for scripts, message for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class GatewayRoutes:
    def __init__(self, store: Store, pool: ipaddress.IPv4Network,
                 clock: Callable[[], float]) -> None:
        self.store = store
        self.pool = pool
        self.clock = clock
        self.by_network: dict[str, dict[str, RouteRecord]] = {}   # network -> prefix -> route
        for r in store.load_routes():
            self.by_network.setdefault(r.network, {})[r.prefix] = r

    def prefix(self, value: str) -> str:
        try:
            return str(parse_prefix(value, self.pool))
        except RouteRefused as e:
            raise RouteError("invalid", str(e)) from None

    def get(self, network: str, prefix: str) -> RouteRecord:
        r = self.by_network.get(network, {}).get(prefix)
        if r is None:
            raise RouteError("no_such_route", f"no route {prefix} is announced in {network!r}")
        return r

    def _overlap(self, network: str, prefix: str, skip: str) -> RouteRecord | None:
        p = ipaddress.IPv4Network(prefix)
        for other in self.by_network.get(network, {}).values():
            if other.prefix != skip and other.approved and \
                    ipaddress.IPv4Network(other.prefix).overlaps(p):
                return other
        return None

    def announce(self, network: str, prefix: str, gateway: str, masquerade: bool,
                 by_owner: bool, name_of: Callable[[str], str]) -> RouteRecord:
        routes = self.by_network.setdefault(network, {})
        old = routes.get(prefix)
        if old is not None and old.gateway != gateway:
            raise RouteError("conflict", f"{prefix} is already announced in {network!r} by "
                                         f"{name_of(old.gateway)}")
        clash = self._overlap(network, prefix, skip=prefix)
        if clash is not None and clash.gateway != gateway:
            raise RouteError("conflict", f"{prefix} overlaps {clash.prefix}, approved in "
                                         f"{network!r} via {name_of(clash.gateway)}")
        if old is not None:
            r = old.with_(masquerade=masquerade)
        else:
            r = RouteRecord(network, prefix, gateway, False, masquerade, self.clock())
        if by_owner and not r.approved:
            if clash is not None:
                raise RouteError("conflict", f"{prefix} overlaps {clash.prefix}, approved in "
                                             f"{network!r}")
            r = r.with_(approved=True)
        if r != old:
            routes[prefix] = r
            self.store.put_route(r)
        return r

    def approve(self, network: str, prefix: str, name_of: Callable[[str], str]) -> RouteRecord:
        r = self.get(network, prefix)
        if r.approved:
            return r
        clash = self._overlap(network, prefix, skip=prefix)
        if clash is not None:
            raise RouteError("conflict", f"{prefix} overlaps {clash.prefix}, already approved "
                                         f"in {network!r} via {name_of(clash.gateway)}")
        r = r.with_(approved=True)
        self.by_network[network][prefix] = r
        self.store.put_route(r)
        return r

    def remove(self, network: str, prefix: str) -> None:
        self.get(network, prefix)
        del self.by_network[network][prefix]
        self.store.delete_route(network, prefix)

    def replace_all(self, network: str, prefix: str, gateway: str) -> None:
        """``network set --gateway G --lan-route P``: G's one approved route, nothing else."""
        for p in list(self.by_network.get(network, {})):
            self.remove(network, p)
        r = RouteRecord(network, prefix, gateway, True, False, self.clock())
        self.by_network.setdefault(network, {})[prefix] = r
        self.store.put_route(r)

    def drop_gateway(self, network: str, gateway: str) -> bool:
        """The member left or was evicted: its routes go. True when something changed."""
        gone = [p for p, r in self.by_network.get(network, {}).items() if r.gateway == gateway]
        for p in gone:
            self.remove(network, p)
        return bool(gone)

    def drop_network(self, network: str) -> None:
        self.by_network.pop(network, None)   # rows go with the network (ON DELETE CASCADE)

    def of_network(self, network: str) -> list[RouteRecord]:
        return sorted(self.by_network.get(network, {}).values(),
                      key=lambda r: ipaddress.IPv4Network(r.prefix))

    def infos(self, network: str, name_of: Callable[[str], str]) -> list[m.RouteInfo]:
        return [m.RouteInfo.model_construct(prefix=r.prefix, gateway=r.gateway,
                                            gateway_name=name_of(r.gateway), approved=r.approved,
                                            masquerade=r.masquerade)
                for r in self.of_network(network)]
