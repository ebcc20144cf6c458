"""Membership rules, visibility and address allocation, without sockets."""

import pytest
from shoal.control import messages as m
from shoal.identity import StaticKeypair
from shoal.server.coordinator import Coordinator, PoolExhausted, RequestError
from shoal.server.store import MemoryStore, SqliteStore


def key() -> str:
    return StaticKeypair.generate().public_b64


class World:
    def __init__(self, store=None, pool="100.64.0.0/10"):
        self.c = Coordinator(store or MemoryStore(), pool, clock=lambda: 1000.0)
        self.keys: dict[str, str] = {}
        self.inbox: dict[str, list[m.Msg]] = {}

    def deliver(self, out):
        for k, msg in out:
            self.inbox.setdefault(k, []).append(msg)

    def login(self, name: str) -> m.Welcome:
        k = self.keys.setdefault(name, key())
        w, out = self.c.login(k, m.Hello(name=name, udp_port=41641), "203.0.113.5")
        self.deliver(out)
        return w

    def peers(self, name: str) -> set[str]:
        k = self.keys[name]
        names = {v: n for n, v in self.keys.items()}
        return {names[p] for p in self.c.online[k].told}

    def create(self, owner: str, net: str, **kw):
        self.deliver(self.c.create(self.keys[owner], m.CreateArgs(name=net, password="pw", **kw),
                                   "hash"))

    def join(self, who: str, net: str, ok: bool = True) -> str:
        status, out = self.c.join(self.keys[who], net, ok)
        self.deliver(out)
        return status


def test_addresses_distinct_stable_and_skip_special():
    w = World(pool="100.64.0.0/23")
    ips = [w.login(f"n{i}").virtual_ip for i in range(300)]
    assert len(set(ips)) == 300
    assert "100.64.0.0" not in ips and "100.64.1.255" not in ips and "100.64.0.255" not in ips
    assert w.login("n7").virtual_ip == ips[7]  # same key, same address


def test_addresses_survive_restart(tmp_path):
    db = tmp_path / "s.db"
    w = World(SqliteStore(db))
    a = w.login("a").virtual_ip
    b = w.login("b").virtual_ip
    w.create("a", "lan")
    w2 = World(SqliteStore(db))
    w2.keys = dict(w.keys)
    assert w2.login("b").virtual_ip == b and w2.login("a").virtual_ip == a
    assert "lan" in w2.c.networks and w2.keys["a"] in w2.c.members["lan"]
    assert w2.login("c").virtual_ip not in (a, b)


def test_pool_exhaustion():
    w = World(pool="100.64.0.0/30")  # .1 and .2 usable
    w.login("a")
    w.login("b")
    with pytest.raises(PoolExhausted):
        w.login("c")


def test_mesh_presence_up_and_down():
    w = World()
    for n in "abc":
        w.login(n)
    w.create("a", "lan")
    w.join("b", "lan")
    w.join("c", "lan")
    assert w.peers("a") == {"b", "c"} and w.peers("b") == {"a", "c"}
    w.deliver(w.c.logout(w.keys["c"]))
    assert w.peers("a") == {"b"}
    last = w.inbox[w.keys["a"]][-2:]
    assert any(isinstance(x, m.Peers) and w.keys["c"] in x.down for x in last)
    w.login("c")
    assert w.peers("a") == {"b", "c"}
    assert w.inbox[w.keys["c"]][1].full  # a re-login starts with a full snapshot


def test_wrong_password_locked_full():
    w = World()
    for n in "abcd":
        w.login(n)
    w.create("a", "lan", member_limit=2)
    with pytest.raises(RequestError) as e:
        w.join("b", "lan", ok=False)
    assert e.value.code == "wrong_password"
    assert w.join("b", "lan") == "active"
    with pytest.raises(RequestError) as e:
        w.join("c", "lan")
    assert e.value.code == "full"
    w.create("a", "closed", join_mode="locked")
    with pytest.raises(RequestError) as e:
        w.join("d", "closed")
    assert e.value.code == "locked"
    assert w.peers("d") == set()


def test_approval_flow():
    w = World()
    for n in "ab":
        w.login(n)
    w.create("a", "club", join_mode="approval")
    assert w.join("b", "club") == "pending"
    assert w.peers("a") == set() and w.peers("b") == set()
    summary = w.c.summaries(w.keys["a"])[0]
    assert summary.pending == 1 and summary.members == 1
    assert w.c.summaries(w.keys["b"])[0].role == "pending"
    with pytest.raises(RequestError) as e:
        w.c.approve(w.keys["b"], "club", "b")
    assert e.value.code == "not_owner"
    w.deliver(w.c.approve(w.keys["a"], "club", "b"))
    assert w.peers("a") == {"b"} and w.peers("b") == {"a"}


def test_hub_and_spoke_visibility():
    w = World()
    for n in "hxyz":
        w.login(n)
    w.create("h", "hs", type="hub-and-spoke")
    for n in "xyz":
        w.join(n, "hs")
    assert w.peers("x") == set()  # no hub yet: nobody sees anybody
    w.deliver(w.c.set(w.keys["h"], m.SetArgs(name="hs", hub_add=["h"]), None))
    assert w.peers("x") == {"h"} and w.peers("y") == {"h"}
    assert w.peers("h") == {"x", "y", "z"}
    w.deliver(w.c.set(w.keys["h"], m.SetArgs(name="hs", hub_add=["x"]), None))
    assert w.peers("y") == {"h", "x"}


def test_shared_networks_exactly_one_tunnel():
    w = World()
    for n in "ab":
        w.login(n)
    w.create("a", "one")
    w.create("a", "two")
    w.join("b", "one")
    w.join("b", "two")
    assert w.c.desired_peers(w.keys["a"])[w.keys["b"]].networks == ["one", "two"]
    assert w.c.online[w.keys["a"]].told[w.keys["b"]][1] == ("one", "two")
    w.deliver(w.c.leave(w.keys["b"], "one"))
    assert w.peers("a") == {"b"}  # still share "two"
    w.deliver(w.c.leave(w.keys["b"], "two"))
    assert w.peers("a") == set()


def test_evict_transfer_delete():
    w = World()
    for n in "abc":
        w.login(n)
    w.create("a", "lan")
    w.join("b", "lan")
    w.join("c", "lan")
    w.deliver(w.c.evict(w.keys["a"], "lan", "c"))
    assert w.peers("c") == set() and "c" not in {x for x in w.peers("a")}
    with pytest.raises(RequestError):
        w.c.evict(w.keys["b"], "lan", "a")
    w.deliver(w.c.set(w.keys["a"], m.SetArgs(name="lan", owner="b"), None))
    assert w.c.networks["lan"].owner == w.keys["b"]
    with pytest.raises(RequestError) as e:
        w.c.delete(w.keys["a"], "lan")
    assert e.value.code == "not_owner"
    w.deliver(w.c.delete(w.keys["b"], "lan"))
    assert "lan" not in w.c.networks and w.peers("a") == set()


def test_owner_leaving_hands_over_or_deletes():
    w = World()
    for n in "ab":
        w.login(n)
    w.create("a", "lan")
    w.join("b", "lan")
    w.deliver(w.c.leave(w.keys["a"], "lan"))
    assert w.c.networks["lan"].owner == w.keys["b"]
    w.deliver(w.c.leave(w.keys["b"], "lan"))
    assert "lan" not in w.c.networks


def test_member_resolution_and_listing():
    w = World()
    for n in "ab":
        w.login(n)
    w.create("a", "lan", join_mode="approval")
    w.join("b", "lan")
    listing = w.c.member_list(w.keys["a"], "lan")
    assert [(x["name"], x["role"]) for x in listing] == [("a", "owner"), ("b", "pending")]
    with pytest.raises(RequestError):
        w.c.member_list(w.keys["b"], "lan")  # pending members see nothing
    assert w.c.resolve_member("lan", w.c.nodes[w.keys["b"]].virtual_ip) == w.keys["b"]
    with pytest.raises(RequestError):
        w.c.resolve_member("lan", "nobody")


def test_duplicate_network_name():
    w = World()
    w.login("a")
    w.create("a", "lan")
    with pytest.raises(RequestError) as e:
        w.create("a", "lan")
    assert e.value.code == "exists"


def test_signals_reach_only_peers_that_see_each_other_and_are_rate_limited():
    from shoal.server.coordinator import SIGNAL_RATE

    w = World()
    for n in ("a", "b", "c"):
        w.login(n)
    w.create("a", "lan")
    w.join("b", "lan")
    sig = m.SignalTo(to=w.keys["b"], kind="template", data="hello")
    out = w.c.signal(w.keys["a"], sig)
    assert out == [(w.keys["b"], m.Signal(sender=w.keys["a"], kind="template", data="hello"))]
    # c shares no network with a: nothing is forwarded either way
    assert w.c.signal(w.keys["c"], sig) == []
    assert w.c.signal(w.keys["a"], m.SignalTo(to=w.keys["c"], kind="x", data="")) == []
    # at most SIGNAL_RATE per second per sender (the clock stands still in World)
    sent = sum(len(w.c.signal(w.keys["b"], m.SignalTo(to=w.keys["a"], kind="k", data="d")))
               for _ in range(SIGNAL_RATE + 10))
    assert sent == SIGNAL_RATE


def test_signal_messages_round_trip_and_are_bounded():
    k = key()
    msg = m.decode_to_node(m.encode(m.Signal(sender=k, kind="wss", data="x" * 1024)))
    assert isinstance(msg, m.Signal) and msg.sender == k and len(msg.data) == 1024
    with pytest.raises(m.BadMessage):
        m.decode_to_server(m.encode(m.SignalTo.model_construct(to=k, kind="wss",
                                                               data="x" * 1025)))
