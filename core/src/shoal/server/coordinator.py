"""The coordination server's rules, without sockets.

Rules it obeys (ARCHITECTURE §3):

* A node is its static public key. Its first login allocates a virtual IP from
  the pool (never the network or broadcast address, nor a .0/.255 host); the
  address stays bound to that key for good, across restarts of the server.
* Networks have a name, a password (only its KDF hash is stored: the caller
  hashes/verifies, see ``passwords.py``), an owner, a join mode (open /
  approval / locked), a member limit and a type. ``mesh``: every member
  tunnels to every member; ``hub-and-spoke``: a pair tunnels only if one side
  is a hub; ``gateway``: mesh, and members announce LAN routes that the owner
  approves (rules in ``gateway_routes``); every active member is told the
  network's routes with its summary.
* Two online nodes get a tunnel ("peers up") while they share at least one
  network whose rules let them see each other, and lose it ("peers down") as
  soon as no such network is left or one goes offline.

Every method returns an ``Outbox``: (recipient public key, message) pairs for
the server shell to deliver. State lives in memory and is written through the
``Store`` on every change.

Cluster (several servers, one PostgreSQL): ``online`` holds every node online
anywhere; ``local`` ones are connected here and are the only ones told
anything (and the only ones whose ``told`` views are kept). Changes made by
other servers arrive as fresh rows (``apply_network``, ``remote_online``,
``remote_offline``, or a full ``resync``) and update only the pairs they touch.
Decisions other servers could race (a new address, a seat in a network, a
network name) are taken by the store first (``*_check`` here, then the store,
then ``admit``/``adopt``).
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from shoal.control import messages as m
from shoal.server.gateway_routes import GatewayRoutes, RouteError
from shoal.server.store import (
    MemberRecord,
    MemberStatus,
    NetworkRecord,
    NodeRecord,
    RouteRecord,
    Store,
)

log = logging.getLogger(__name__)

Outbox = list[tuple[str, m.Msg]]
SIGNAL_RATE = 50   # signals per second a node may send to its peers
View = tuple[int, tuple[str, ...]]


class RequestError(Exception):
    """A request the rules refuse: ``code`` for scripts, message for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class PoolExhausted(Exception):
    pass


@dataclass
class Online:
    name: str
    endpoints: list[str]
    nat: m.NatInfo = field(default_factory=m.NatInfo)
    info: m.PeerInfo | None = None    # cached description of this node for its peers
    version: int = 0                  # bumped when that description changes
    # What this node was told about each peer: (the peer's version, networks).
    # Small tuples, not messages: this is per pair, so it is most of the memory.
    told: dict[str, View] = field(default_factory=dict)
    local: bool = True                # connected to this server (else: to another one)


class Coordinator:
    def __init__(self, store: Store, pool: str = "100.64.0.0/10",
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self.pool = ipaddress.IPv4Network(pool)
        self.nodes: dict[str, NodeRecord] = {}
        self.networks: dict[str, NetworkRecord] = {}
        self.members: dict[str, dict[str, MemberRecord]] = {}     # network -> key -> member
        self.memberships: dict[str, set[str]] = {}                # key -> networks
        self.online: dict[str, Online] = {}
        self._active_counts: dict[str, int] = {}
        self._used_ips: set[int] = set()
        self._versions = itertools.count(1)   # Online.version: unique across sessions
        self._signal_counts: dict[str, tuple[float, int]] = {}   # online key -> (window, n)
        self._load(*store.load())
        self._next_ip = int(self.pool.network_address) + 1
        self.routes = GatewayRoutes(store, self.pool, clock)

    def _load(self, nodes: list[NodeRecord], nets: list[NetworkRecord],
              members: list[MemberRecord]) -> None:
        self.nodes, self.networks, self.members, self.memberships = {}, {}, {}, {}
        self._active_counts = {}
        for n in nodes:
            self._add_node(n)
        for net in nets:
            self.networks[net.name] = net
            self.members[net.name] = {}
        for mem in members:
            self.members.setdefault(mem.network, {})[mem.public_key] = mem
            self.memberships.setdefault(mem.public_key, set()).add(mem.network)

    def _add_node(self, n: NodeRecord) -> None:
        self.nodes[n.public_key] = n
        try:
            self._used_ips.add(int(ipaddress.IPv4Address(n.virtual_ip)))
        except ValueError:
            pass

    # ------------------------------------------------------------ addresses
    def _usable(self, ip: int) -> bool:
        last = ip & 0xFF
        return (ip not in self._used_ips and last not in (0, 255)
                and ip != int(self.pool.network_address)
                and ip != int(self.pool.broadcast_address))

    def _allocate_ip(self) -> str:
        start, end = int(self.pool.network_address) + 1, int(self.pool.broadcast_address) - 1
        ip = self._next_ip
        for _ in range(2):
            while ip <= end:
                if self._usable(ip):
                    self._next_ip = ip + 1
                    self._used_ips.add(ip)
                    return str(ipaddress.IPv4Address(ip))
                ip += 1
            ip = start  # wrap once to find gaps
        raise PoolExhausted(f"address pool {self.pool} is exhausted")

    def new_node(self, key: str, name: str) -> NodeRecord:
        """A record for a first login, with a free address (the store may still refuse it:
        another server can take the same one first; then call again)."""
        now = self.clock()
        return NodeRecord(key, name, self._allocate_ip(), now, now)

    def address_taken(self, ip: str) -> None:
        self._used_ips.add(int(ipaddress.IPv4Address(ip)))

    def known_node(self, n: NodeRecord) -> None:
        """A node record as stored (claimed here or by another server)."""
        self._add_node(n)

    # ------------------------------------------------------------ presence
    def login(self, key: str, hello: m.Hello, observed: str | None = None
              ) -> tuple[m.Welcome, Outbox]:
        now = self.clock()
        node = self.nodes.get(key)
        if node is None:
            node = NodeRecord(key, hello.name, self._allocate_ip(), now, now)
            log.info("new node %s (%s) gets %s", hello.name, key, node.virtual_ip)
            self.store.put_node(node)
        elif node.name != hello.name:
            node = replace(node, name=hello.name, last_seen=now)
            self.store.put_node(node)
        # (last_seen is written when the node goes away: a login writes only what changed)
        self.nodes[key] = node
        endpoints = list(hello.endpoints)
        if observed and hello.udp_port:
            reflexive = f"{observed}:{hello.udp_port}"
            if reflexive not in endpoints:
                endpoints.insert(0, reflexive)
        # A new session (a quick reconnect, maybe under a new name, or a node that
        # moved here from another server) gets a fresh version: every neighbour hears.
        self.online[key] = Online(hello.name, endpoints, version=next(self._versions))
        welcome = m.Welcome(virtual_ip=node.virtual_ip, prefix_len=self.pool.prefixlen,
                            observed=observed)
        out: Outbox = [(key, self._networks_msg(key))]
        # The first peers message after a login is a full snapshot: the node keeps
        # tunnels that are still wanted and drops the rest, so re-login drops nothing.
        out += self._sync_peers(key, full=True)
        out += self._sync_towards(key)
        return welcome, out

    def report(self, key: str, r: m.Report, observed: str | None = None) -> Outbox:
        """New candidates / NAT findings from a node: peers get updated ``up`` entries."""
        on = self.online.get(key)
        if on is None:
            return []
        endpoints = list(dict.fromkeys(r.endpoints))  # keep order, drop duplicates
        on.endpoints, on.nat = endpoints[:16], r.nat
        on.info = None
        on.version = next(self._versions)
        return self._sync_towards(key)

    def signal(self, key: str, sig: m.SignalTo) -> Outbox:
        """Forward a plugin's signal to a peer, only if the two see each other now.

        Bounded: at most ``SIGNAL_RATE`` signals per second per sender (more are dropped).
        """
        if key not in self.online or sig.to not in self.online:
            return []
        now = self.clock()
        window, count = self._signal_counts.get(key, (0.0, 0))
        if now - window >= 1.0:
            window, count = now, 0
        if count >= SIGNAL_RATE:
            return []
        self._signal_counts[key] = (window, count + 1)
        if sig.to not in self._desired(key):
            return []
        return [(sig.to, m.Signal(sender=key, kind=sig.kind, data=sig.data))]

    def logout(self, key: str, notify: bool = True) -> Outbox:
        """The node went away; ``notify=False`` (server shutdown) only records it."""
        self._signal_counts.pop(key, None)
        if self.online.pop(key, None) is None:
            return []
        node = self.nodes.get(key)
        if node is not None:
            node = replace(node, last_seen=self.clock())
            self.nodes[key] = node
            self.store.put_node(node)
        return self._sync_towards(key) if notify else []

    def is_local(self, key: str) -> bool:
        on = self.online.get(key)
        return on is not None and on.local

    def remote_online(self, key: str, endpoints: list[str], nat: m.NatInfo) -> Outbox:
        """``key`` is online at another server (or its candidates changed there)."""
        node = self.nodes.get(key)
        on = self.online.get(key)
        if node is None or (on is not None and on.local):
            return []
        if on is not None and on.endpoints == endpoints and on.nat == nat \
                and on.name == node.name:
            return []
        self.online[key] = Online(node.name, list(endpoints)[:16], nat,
                                  version=next(self._versions), local=False)
        return self._sync_towards(key)

    def remote_offline(self, key: str) -> Outbox:
        on = self.online.get(key)
        if on is None or on.local:
            return []
        del self.online[key]
        return self._sync_towards(key)

    def local_keys(self) -> list[str]:
        return [k for k, on in self.online.items() if on.local]

    # ------------------------------------------------------------ changes made elsewhere
    def apply_network(self, name: str, net: NetworkRecord | None, members: list[MemberRecord],
                      nodes: list[NodeRecord], routes: list[RouteRecord] | None = None
                      ) -> Outbox:
        """The stored rows of network ``name`` (None: deleted), as another server left them."""
        for n in nodes:
            if n.public_key not in self.nodes:
                self._add_node(n)
        old = self.members.get(name, {})
        new = {x.public_key: x for x in members} if net is not None else {}
        if net is None and name not in self.networks:
            return []
        changed = {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}
        net_changed = self.networks.get(name) != net
        if routes is not None:
            new_routes = {r.prefix: r for r in routes}
            if self.routes.by_network.get(name, {}) != new_routes:
                net_changed = True   # every member is told the network's routes
                if new_routes:
                    self.routes.by_network[name] = new_routes
                else:
                    self.routes.by_network.pop(name, None)
        if not changed and not net_changed:
            return []
        for k in old.keys() - new.keys():
            self.memberships.get(k, set()).discard(name)
        for k in new:
            self.memberships.setdefault(k, set()).add(name)
        self._active_counts.pop(name, None)
        if net is None:
            self.networks.pop(name, None)
            self.members.pop(name, None)
            keys = {k for k in changed if k in self.online}
            return self._sync_many(keys) + [(k, self._networks_msg(k)) for k in keys
                                             if self.online[k].local]
        self.networks[name] = net
        self.members[name] = new
        if net_changed:
            return self._changed(name, changed)
        keys = self._network_keys(name) | {k for k in changed if k in self.online}
        out: Outbox = []
        for k in changed:
            out += self._sync_peers(k) + self._sync_towards(k, among=keys)
        out += [(k, self._networks_msg(k)) for k in keys if self.online[k].local]
        return out

    def resync(self, nodes: list[NodeRecord], nets: list[NetworkRecord],
               members: list[MemberRecord], remote: dict[str, tuple[list[str], m.NatInfo]],
               routes: list[RouteRecord] | None = None) -> Outbox:
        """Replace the cache with the stored state; ``remote``: nodes online at other
        servers. Local nodes are told only what differs from what they were told."""
        self._load(nodes, nets, members)
        if routes is not None:
            self.routes.by_network = {}
            for r in routes:
                self.routes.by_network.setdefault(r.network, {})[r.prefix] = r
        for key, on in list(self.online.items()):
            if not on.local and (key not in remote or key not in self.nodes):
                del self.online[key]
        for key, (endpoints, nat) in remote.items():
            on = self.online.get(key)
            node = self.nodes.get(key)
            if node is None or (on is not None and (on.local or (
                    on.endpoints == endpoints and on.nat == nat and on.name == node.name))):
                continue
            self.online[key] = Online(node.name, list(endpoints)[:16], nat,
                                      version=next(self._versions), local=False)
        out: Outbox = []
        for key in self.local_keys():
            if key not in self.nodes:
                continue
            out += self._sync_peers(key)
            out.append((key, self._networks_msg(key)))
        return out

    # ------------------------------------------------------------ visibility
    def _sees(self, net: NetworkRecord, a: MemberRecord, b: MemberRecord) -> bool:
        if a.status != "active" or b.status != "active":
            return False
        if net.type == "hub-and-spoke":
            return a.hub or b.hub
        return True

    def desired_peers(self, key: str) -> dict[str, m.PeerInfo]:
        """Online peers ``key`` should have a tunnel to, with the networks that justify it."""
        return {other: self._info(other, list(nets))
                for other, nets in self._desired(key).items()}

    def _desired(self, key: str) -> dict[str, tuple[str, ...]]:
        via: dict[str, list[str]] = {}
        for netname in sorted(self.memberships.get(key, ())):
            net = self.networks[netname]
            members = self.members[netname]
            me = members.get(key)
            if me is None or me.status != "active":
                continue
            for other, mem in members.items():
                if other == key or other not in self.online:
                    continue
                if self._sees(net, me, mem):
                    via.setdefault(other, []).append(netname)
        return {other: tuple(nets) for other, nets in via.items()}

    def _view(self, key: str, nets: tuple[str, ...]) -> View:
        return (self.online[key].version, nets)

    def _info(self, key: str, networks: list[str]) -> m.PeerInfo:
        """What a node is told about an online peer (built without re-validation: the
        fields come from validated state, and this runs for every pair on a login)."""
        on = self.online[key]
        base = on.info
        if base is None:
            node = self.nodes[key]
            base = on.info = m.PeerInfo.model_construct(
                public_key=key, name=node.name, virtual_ip=node.virtual_ip,
                endpoints=on.endpoints, networks=[], nat=on.nat)
        return base.model_copy(update={"networks": networks})

    def _pair_networks(self, viewer: str, other: str) -> list[str]:
        """Networks through which ``viewer`` may see ``other`` (sorted)."""
        out = []
        for netname in sorted(self.memberships.get(viewer, set())
                              & self.memberships.get(other, set())):
            members = self.members[netname]
            if self._sees(self.networks[netname], members[viewer], members[other]):
                out.append(netname)
        return out

    def _sync_towards(self, key: str, among: set[str] | None = None) -> Outbox:
        """``key`` came, went or changed: update only the pairs (neighbour, key).

        A presence change touches one pair per neighbour, so a login costs
        O(network size), not O(network size squared).
        """
        out: Outbox = []
        online = key in self.online
        for n in (self._neighbours(key) if among is None else among - {key}):
            on = self.online.get(n)
            if on is None or not on.local:
                continue
            nets = tuple(self._pair_networks(n, key)) if online else ()
            old = on.told.get(key)
            if not nets:
                if old is not None:
                    del on.told[key]
                    out.append((n, m.Peers(down=[key])))
                continue
            view = self._view(key, nets)
            if view != old:
                on.told[key] = view
                out.append((n, m.Peers(up=[self._info(key, list(nets))])))
        return out

    def _sync_peers(self, key: str, full: bool = False) -> Outbox:
        on = self.online.get(key)
        if on is None or not on.local:
            return []
        want = {k: self._view(k, nets) for k, nets in self._desired(key).items()}
        told, on.told = on.told, want
        if full:
            return [(key, m.Peers(full=True, up=[self._info(k, list(v[1]))
                                                 for k, v in want.items()]))]
        up = [self._info(k, list(v[1])) for k, v in want.items() if told.get(k) != v]
        down = [k for k in told if k not in want]
        if not up and not down:
            return []
        return [(key, m.Peers(up=up, down=down))]

    def _sync_many(self, keys: set[str]) -> Outbox:
        out: Outbox = []
        for k in keys:
            out += self._sync_peers(k)
        return out

    def _neighbours(self, key: str) -> set[str]:
        """Online nodes sharing any network with ``key`` (candidates for a change)."""
        out: set[str] = set()
        for netname in self.memberships.get(key, ()):
            out.update(k for k in self.members[netname] if k in self.online)
        out.discard(key)
        return out

    def active_networks(self, key: str) -> list[str]:
        """Networks in which ``key`` is an active member (what its relay grants name)."""
        return sorted(n for n in self.memberships.get(key, ())
                      if (mem := self.members[n].get(key)) is not None and mem.status == "active")

    def _network_keys(self, netname: str) -> set[str]:
        return {k for k in self.members.get(netname, {}) if k in self.online}

    # ------------------------------------------------------------ network summaries
    def _role(self, net: NetworkRecord, mem: MemberRecord) -> str:
        if mem.status == "pending":
            return "pending"
        if net.owner == mem.public_key:
            return "owner"
        return "hub" if mem.hub else "member"

    def _active_count(self, netname: str) -> int:
        """Active members of a network, cached until its membership changes."""
        n = self._active_counts.get(netname)
        if n is None:
            n = self._active_counts[netname] = sum(
                1 for x in self.members[netname].values() if x.status == "active")
        return n

    def summaries(self, key: str, with_online: bool = False) -> list[m.NetworkSummary]:
        """This node's networks. ``with_online`` counts online members (O(size) each):
        asked for by ``list``; pushed summaries leave it to the node, which knows
        which of its peers are up."""
        out = []
        for netname in sorted(self.memberships.get(key, ())):
            net = self.networks[netname]
            members = self.members[netname]
            active = self._active_count(netname)
            online = sum(1 for k, x in members.items()
                         if x.status == "active" and k in self.online) if with_online else 0
            role = self._role(net, members[key])
            out.append(m.NetworkSummary(
                name=net.name, type=net.type, role=role,
                join_mode=net.join_mode, member_limit=net.member_limit, members=active,
                pending=(len(members) - active) if net.owner == key else 0, online=online,
                routes=self.routes.infos(netname, self._name)
                if role != "pending" and net.type == "gateway" else []))
        return out

    def _networks_msg(self, key: str) -> m.Networks:
        return m.Networks(networks=self.summaries(key))

    # ------------------------------------------------------------ lookups
    def _name(self, key: str) -> str:
        node = self.nodes.get(key)
        return node.name if node is not None else key

    def network(self, name: str) -> NetworkRecord:
        net = self.networks.get(name)
        if net is None:
            raise RequestError("no_such_network", f"there is no network named {name!r}")
        return net

    def owned(self, key: str, name: str) -> NetworkRecord:
        net = self.network(name)
        if net.owner != key:
            raise RequestError("not_owner", f"only the owner of {name!r} can do that")
        return net

    def resolve_member(self, netname: str, who: str) -> str:
        """A member by node name, virtual IP or public key."""
        members = self.members.get(netname, {})
        if who in members:
            return who
        hits = [k for k in members
                if self.nodes[k].name == who or self.nodes[k].virtual_ip == who]
        if not hits:
            raise RequestError("not_member", f"{who!r} is not a member of {netname!r}")
        if len(hits) > 1:
            raise RequestError("ambiguous", f"several members of {netname!r} are called {who!r}; "
                                            "use the public key")
        return hits[0]

    # ------------------------------------------------------------ mutations
    def _put_member(self, mem: MemberRecord, write: bool = True) -> None:
        self._active_counts.pop(mem.network, None)
        self.members[mem.network][mem.public_key] = mem
        self.memberships.setdefault(mem.public_key, set()).add(mem.network)
        if write:
            self.store.put_member(mem)

    def _del_member(self, netname: str, key: str) -> None:
        self._active_counts.pop(netname, None)
        self.members[netname].pop(key, None)
        s = self.memberships.get(key)
        if s is not None:
            s.discard(netname)
        self.store.delete_member(netname, key)

    def _changed(self, netname: str, extra: set[str] | None = None,
                 only: str | None = None) -> Outbox:
        """After a change in ``netname``: re-sync peers and summaries of everyone involved.

        ``only``: the change concerns that one member (joined, left, approved,
        evicted), so only its pairs are re-examined.
        """
        keys = self._network_keys(netname) | {k for k in (extra or set()) if k in self.online}
        if only is not None:
            out = self._sync_peers(only) + self._sync_towards(only, among=keys)
        else:
            out = self._sync_many(keys)
        out += [(k, self._networks_msg(k)) for k in keys if self.online[k].local]
        return out

    def create_check(self, key: str, a: m.CreateArgs, password_hash: str
                     ) -> tuple[NetworkRecord, MemberRecord]:
        """The rows a create would write (refused if the name is taken here)."""
        if a.name in self.networks:
            raise RequestError("exists", f"a network named {a.name!r} already exists")
        now = self.clock()
        return (NetworkRecord(a.name, password_hash, key, a.join_mode, a.member_limit, a.type,
                              now),
                MemberRecord(a.name, key, "active", False, now))

    def create(self, key: str, a: m.CreateArgs, password_hash: str) -> Outbox:
        net, owner = self.create_check(key, a, password_hash)
        self.store.put_network(net)
        self.store.put_member(owner)
        return self.adopt(net, owner)

    def adopt(self, net: NetworkRecord, owner: MemberRecord) -> Outbox:
        """A network the store has just created (with its owner as first member)."""
        self.networks[net.name] = net
        self.members[net.name] = {}
        self._put_member(owner, write=False)
        log.info("network %s created by %s (%s, %s)", net.name, net.owner, net.type,
                 net.join_mode)
        return self._changed(net.name)

    def join_check(self, key: str, name: str, password_ok: bool) -> MemberRecord | None:
        """The member row a join would write, or None when there is nothing to write
        (already a member: see ``join``). Raises the refusals."""
        net = self.network(name)
        existing = self.members[name].get(key)
        if existing is not None and existing.status == "active":
            return None
        if net.join_mode == "locked" and existing is None:
            raise RequestError("locked", f"network {name!r} is locked: no one can join")
        if not password_ok:
            raise RequestError("wrong_password", f"wrong password for network {name!r}")
        if existing is not None:  # pending: asking again changes nothing
            return None
        if self._active_count(name) >= net.member_limit:
            raise self.full(name)
        status: MemberStatus = "pending" if net.join_mode == "approval" else "active"
        return MemberRecord(name, key, status, False, self.clock())

    def full(self, name: str) -> RequestError:
        net = self.networks.get(name)
        limit = f" ({net.member_limit} members)" if net else ""
        return RequestError("full", f"network {name!r} is full{limit}")

    def join(self, key: str, name: str, password_ok: bool) -> tuple[str, Outbox]:
        """Returns the member status ('active' or 'pending') and the outbox."""
        rec = self.join_check(key, name, password_ok)
        if rec is None:
            return self.members[name][key].status, []
        self.store.put_member(rec)
        return rec.status, self.admit(rec)

    def admit(self, rec: MemberRecord) -> Outbox:
        """A member row the store has just written (joined, or approved)."""
        if rec.network not in self.networks:
            return []
        self._put_member(rec, write=False)
        return self._changed(rec.network, {rec.public_key}, only=rec.public_key)

    def leave(self, key: str, name: str) -> Outbox:
        net = self.network(name)
        if key not in self.members[name]:
            raise RequestError("not_member", f"this node is not a member of {name!r}")
        self._del_member(name, key)
        self.routes.drop_gateway(name, key)
        if net.owner == key:
            heirs = sorted((x for x in self.members[name].values() if x.status == "active"),
                           key=lambda x: x.joined)
            if not heirs:
                return self._delete(name, {key})
            net = replace(net, owner=heirs[0].public_key)
            self.networks[name] = net
            self.store.put_network(net)
        return self._changed(name, {key}, only=key)

    def approve_check(self, key: str, name: str, who: str) -> MemberRecord | None:
        net = self.owned(key, name)
        target = self.resolve_member(name, who)
        mem = self.members[name][target]
        if mem.status == "active":
            return None
        if self._active_count(name) >= net.member_limit:
            raise self.full(name)
        return mem.with_(status="active")

    def approve(self, key: str, name: str, who: str) -> Outbox:
        rec = self.approve_check(key, name, who)
        if rec is None:
            return []
        self.store.put_member(rec)
        return self.admit(rec)

    def evict(self, key: str, name: str, who: str) -> Outbox:
        self.owned(key, name)
        target = self.resolve_member(name, who)
        if target == key:
            raise RequestError("invalid", "the owner cannot evict itself; transfer ownership "
                                          "or delete the network")
        self._del_member(name, target)
        self.routes.drop_gateway(name, target)
        return self._changed(name, {target}, only=target)

    def set(self, key: str, a: m.SetArgs, password_hash: str | None) -> Outbox:
        net = self.owned(key, a.name)
        changes: dict[str, object] = {}
        if password_hash is not None:
            changes["password_hash"] = password_hash
        if a.join_mode is not None:
            changes["join_mode"] = a.join_mode
        if a.member_limit is not None:
            changes["member_limit"] = a.member_limit
        if a.type is not None:
            changes["type"] = a.type
        if a.owner is not None:
            new_owner = self.resolve_member(a.name, a.owner)
            if self.members[a.name][new_owner].status != "active":
                raise RequestError("invalid", "the new owner must be an active member")
            changes["owner"] = new_owner
        hub_changes = [(self.resolve_member(a.name, w), True) for w in a.hub_add]
        hub_changes += [(self.resolve_member(a.name, w), False) for w in a.hub_remove]
        if a.lan_route is not None and a.gateway is None:
            raise RequestError("invalid", "lan_route needs gateway (the member that announces it)")
        gateway = None
        if a.gateway is not None:
            gateway = self.resolve_member(a.name, a.gateway)
            try:
                route = str(ipaddress.ip_network(a.lan_route or "", strict=False))
            except ValueError:
                raise RequestError("invalid", f"lan_route {a.lan_route!r} is not a network") from None
        if changes:
            net = replace(net, **changes)  # type: ignore[arg-type]
            self.networks[a.name] = net
            self.store.put_network(net)
        for target, hub in hub_changes:
            self._put_member(self.members[a.name][target].with_(hub=hub))
        if gateway is not None:
            try:
                self.routes.replace_all(a.name, self.routes.prefix(route), gateway)
            except RouteError as e:
                raise RequestError(e.code, str(e)) from None
        return self._changed(a.name)

    def delete(self, key: str, name: str) -> Outbox:
        self.owned(key, name)
        return self._delete(name, set())

    def _delete(self, name: str, extra: set[str]) -> Outbox:
        affected = set(self.members[name]) | extra
        for k in list(self.members[name]):
            self._del_member(name, k)
        del self.networks[name]
        del self.members[name]
        self.routes.drop_network(name)
        self.store.delete_network(name)
        keys = {k for k in affected if k in self.online}
        out = self._sync_many(keys)
        out += [(k, self._networks_msg(k)) for k in keys if self.online[k].local]
        return out

    def member_list(self, key: str, name: str) -> list[dict[str, object]]:
        net = self.network(name)
        me = self.members[name].get(key)
        if me is None or me.status != "active":
            raise RequestError("not_member", f"this node is not a member of {name!r}")
        out = []
        for k, mem in sorted(self.members[name].items(), key=lambda kv: kv[1].joined):
            if mem.status == "pending" and net.owner != key:
                continue
            node = self.nodes[k]
            routes = [r.prefix for r in self.routes.of_network(name)
                      if r.gateway == k and r.approved]
            out.append({"name": node.name, "public_key": k, "virtual_ip": node.virtual_ip,
                        "role": self._role(net, mem), "online": k in self.online,
                        "lan_route": routes[0] if routes else None, "routes": routes})
        return out

    # ------------------------------------------------------------ gateway routes
    def _routes_changed(self, netname: str) -> Outbox:
        """Routes are part of each member's network summary: only summaries are re-sent."""
        return [(k, self._networks_msg(k)) for k in self._network_keys(netname)]

    def _active_member(self, key: str, netname: str) -> NetworkRecord:
        net = self.network(netname)
        me = self.members[netname].get(key)
        if me is None or me.status != "active":
            raise RequestError("not_member", f"this node is not a member of {netname!r}")
        return net

    def route_add(self, key: str, a: m.RouteArgs) -> tuple[m.RouteInfo, Outbox]:
        """``key`` announces ``a.prefix`` as its LAN in network ``a.name``."""
        net = self._active_member(key, a.name)
        if net.type != "gateway":
            raise RequestError("invalid", f"network {a.name!r} is a {net.type} network; routes "
                                          f"need type gateway (shoal network set {a.name} "
                                          "--type gateway)")
        try:
            r = self.routes.announce(a.name, self.routes.prefix(a.prefix), key, a.masquerade,
                                     net.owner == key, self._name)
        except RouteError as e:
            raise RequestError(e.code, str(e)) from None
        log.info("network %s: %s announces %s%s", a.name, self._name(key), r.prefix,
                 " (approved)" if r.approved else " (waiting for approval)")
        return self._route_info(r.network, r.prefix), self._routes_changed(a.name)

    def route_approve(self, key: str, a: m.RouteArgs) -> tuple[m.RouteInfo, Outbox]:
        self.owned(key, a.name)
        return self.approve_route(a.name, a.prefix)

    def approve_route(self, name: str, prefix: str) -> tuple[m.RouteInfo, Outbox]:
        """Approve a route with the owner's authority (checked by the caller: the owner's
        request above, or the server operator's admin page)."""
        self.network(name)
        try:
            r = self.routes.approve(name, self.routes.prefix(prefix), self._name)
        except RouteError as e:
            raise RequestError(e.code, str(e)) from None
        log.info("network %s: route %s via %s approved", name, r.prefix, self._name(r.gateway))
        return self._route_info(r.network, r.prefix), self._routes_changed(name)

    def route_remove(self, key: str, a: m.RouteArgs) -> Outbox:
        net = self._active_member(key, a.name)
        try:
            prefix = self.routes.prefix(a.prefix)
            r = self.routes.get(a.name, prefix)
            if key not in (r.gateway, net.owner):
                raise RequestError("not_owner", f"only the owner of {a.name!r} or the route's "
                                                "gateway can remove it")
            self.routes.remove(a.name, prefix)
        except RouteError as e:
            raise RequestError(e.code, str(e)) from None
        return self._routes_changed(a.name)

    def route_list(self, key: str, name: str) -> list[m.RouteInfo]:
        self._active_member(key, name)
        return self.routes.infos(name, self._name)

    def _route_info(self, netname: str, prefix: str) -> m.RouteInfo:
        return next(i for i in self.routes.infos(netname, self._name) if i.prefix == prefix)
