"""Gateway routes on the server: announce, approve, conflicts, removal, persistence."""

import pytest
from shoal.control import messages as m
from shoal.identity import StaticKeypair
from shoal.server.coordinator import Coordinator, RequestError
from shoal.server.store import MemoryStore, SqliteStore


class World:
    def __init__(self, store=None):
        self.c = Coordinator(store or MemoryStore(), clock=lambda: 1000.0)
        self.keys: dict[str, str] = {}
        self.inbox: dict[str, list[m.Msg]] = {}

    def deliver(self, out):
        for k, msg in out:
            self.inbox.setdefault(k, []).append(msg)

    def login(self, name: str) -> None:
        k = self.keys.setdefault(name, StaticKeypair.generate().public_b64)
        self.deliver(self.c.login(k, m.Hello(name=name, udp_port=41641), "203.0.113.5")[1])

    def create(self, owner: str, net: str, **kw):
        self.deliver(self.c.create(self.keys[owner], m.CreateArgs(name=net, password="pw", **kw),
                                   "hash"))

    def join(self, who: str, net: str) -> None:
        self.deliver(self.c.join(self.keys[who], net, True)[1])


def world(store=None) -> World:
    w = World(store)
    for n in ("owner", "gw", "gw2", "member"):
        w.login(n)
    w.create("owner", "site", type="gateway")
    for n in ("gw", "gw2", "member"):
        w.join(n, "site")
    return w


def add(w: World, who: str, prefix: str, net: str = "site", **kw) -> m.RouteInfo:
    info, out = w.c.route_add(w.keys[who], m.RouteArgs(name=net, prefix=prefix, **kw))
    w.deliver(out)
    return info


def approve(w: World, prefix: str, who: str = "owner", net: str = "site") -> m.RouteInfo:
    info, out = w.c.route_approve(w.keys[who], m.RouteArgs(name=net, prefix=prefix))
    w.deliver(out)
    return info


def routes_seen(w: World, who: str, net: str = "site") -> list[m.RouteInfo]:
    last = [x for x in w.inbox[w.keys[who]] if isinstance(x, m.Networks)][-1]
    return next(n for n in last.networks if n.name == net).routes


def test_announce_waits_for_owner_approval_and_every_member_is_told():
    w = world()
    info = add(w, "gw", "192.168.50.0/24")
    assert not info.approved and info.gateway == w.keys["gw"] and info.gateway_name == "gw"
    assert [r.approved for r in routes_seen(w, "member")] == [False]
    with pytest.raises(RequestError, match="only the owner"):
        approve(w, "192.168.50.0/24", who="member")
    assert approve(w, "192.168.50.0/24").approved
    seen = routes_seen(w, "member")
    assert [(r.prefix, r.gateway_name, r.approved) for r in seen] == \
        [("192.168.50.0/24", "gw", True)]


def test_owner_announcement_is_approved_at_once():
    w = world()
    assert add(w, "owner", "10.20.0.0/16", masquerade=True).approved


def test_conflicts_are_refused_with_one_line():
    w = world()
    add(w, "gw", "192.168.50.0/24")
    approve(w, "192.168.50.0/24")
    with pytest.raises(RequestError, match="already announced in 'site' by gw"):
        add(w, "gw2", "192.168.50.0/24")
    with pytest.raises(RequestError, match=r"overlaps 192.168.50.0/24, approved in 'site' via gw"):
        add(w, "gw2", "192.168.0.0/16")
    # two announcements that overlap can both wait; only one can be approved
    add(w, "gw2", "10.1.0.0/16")
    add(w, "gw", "10.1.2.0/24")
    approve(w, "10.1.0.0/16")
    with pytest.raises(RequestError, match="overlaps 10.1.0.0/16, already approved"):
        approve(w, "10.1.2.0/24")
    with pytest.raises(RequestError, match="overlay address pool"):
        add(w, "gw", "100.64.1.0/24")


def test_routes_need_a_gateway_network_and_membership():
    w = world()
    w.create("owner", "flat")
    with pytest.raises(RequestError, match="routes need type gateway"):
        add(w, "owner", "192.168.9.0/24", net="flat")
    with pytest.raises(RequestError, match="not a member"):
        add(w, "gw", "192.168.9.0/24", net="flat")


def test_gateway_leaving_or_evicted_takes_its_routes():
    w = world()
    add(w, "gw", "192.168.50.0/24")
    add(w, "gw2", "192.168.60.0/24")
    w.deliver(w.c.leave(w.keys["gw"], "site"))
    w.deliver(w.c.evict(w.keys["owner"], "site", "gw2"))
    assert routes_seen(w, "member") == []


def test_remove_by_gateway_or_owner_only():
    w = world()
    add(w, "gw", "192.168.50.0/24")
    with pytest.raises(RequestError, match="owner of 'site' or the route's gateway"):
        w.c.route_remove(w.keys["member"], m.RouteArgs(name="site", prefix="192.168.50.0/24"))
    w.deliver(w.c.route_remove(w.keys["gw"], m.RouteArgs(name="site", prefix="192.168.50.0/24")))
    assert routes_seen(w, "member") == []


def test_routes_survive_restart_and_legacy_lan_route(tmp_path):
    db = tmp_path / "s.db"
    w = world(SqliteStore(db))
    add(w, "gw", "192.168.50.0/24", masquerade=True)
    approve(w, "192.168.50.0/24")
    w.deliver(w.c.set(w.keys["owner"], m.SetArgs(name="site"), None))
    w2 = World(SqliteStore(db))
    [r] = w2.c.routes.of_network("site")
    assert (r.prefix, r.gateway, r.approved, r.masquerade) == \
        ("192.168.50.0/24", w.keys["gw"], True, True)
    # "network set --gateway --lan-route" replaces the network's routes with one approved route
    w2.c.set(w.keys["owner"], m.SetArgs(name="site", gateway="gw2", lan_route="10.7.0.0/16"),
             None)
    assert [(r.prefix, r.gateway, r.approved) for r in w2.c.routes.of_network("site")] == \
        [("10.7.0.0/16", w.keys["gw2"], True)]
    members = {x["name"]: x for x in w2.c.member_list(w.keys["owner"], "site")}
    assert members["gw2"]["lan_route"] == "10.7.0.0/16" and members["gw"]["lan_route"] is None


def test_routes_apply_only_while_the_network_is_a_gateway_network():
    w = world()
    add(w, "owner", "10.20.0.0/16")
    w.deliver(w.c.set(w.keys["owner"], m.SetArgs(name="site", type="mesh"), None))
    assert routes_seen(w, "member") == []
    w.deliver(w.c.set(w.keys["owner"], m.SetArgs(name="site", type="gateway"), None))
    assert [r.prefix for r in routes_seen(w, "member")] == ["10.20.0.0/16"]
