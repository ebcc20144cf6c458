"""Who may learn which names: this host everything, a peer only its shared networks."""

from types import SimpleNamespace

from dnslib import RCODE, DNSRecord
from shoal.testing.fakes import FakeNodeHandle
from shoal_names_dns.answer import refuse
from shoal_names_dns.plugin import members_of, visible_to
from shoal_names_dns.zone import build


def _node():
    node = FakeNodeHandle("dns", config=SimpleNamespace(name="me"),
                          keypair=SimpleNamespace(public_b64="m" * 43 + "="))
    node.address = "100.64.0.2"
    node.own_networks = ["site", "other"]   # "club" is pending: not listed
    for k, name, key, ip, nets in ((b"1", "bob", "b", "100.64.0.3", ["site"]),
                                   (b"2", "eve", "e", "100.64.0.4", ["other"]),
                                   (b"3", "stat", "s", "100.64.0.5", ["static"])):
        node.peer_map[k] = SimpleNamespace(name=name, public_key_b64=key * 43 + "=",
                                           virtual_ip=ip)
        node.peer_networks[k] = nets
    return node


NODE = _node()


def test_members_of_the_node_and_its_peers():
    names = build(members_of(NODE))
    assert names == {"me.site.shoal": "100.64.0.2", "me.other.shoal": "100.64.0.2",
                     "bob.site.shoal": "100.64.0.3", "eve.other.shoal": "100.64.0.4",
                     "me.shoal": "100.64.0.2", "bob.shoal": "100.64.0.3",
                     "eve.shoal": "100.64.0.4"}


def test_each_requester_sees_only_what_it_shares():
    members = members_of(NODE)
    for local in ("100.64.0.2", "127.0.0.1", "::1"):
        assert visible_to(NODE, members, local) == members
    assert set(build(visible_to(NODE, members, "100.64.0.4"))) == {
        "me.other.shoal", "eve.other.shoal", "me.shoal", "eve.shoal"}
    assert visible_to(NODE, members, "192.168.50.10") is None


def test_refuse_answers_queries_only():
    q = DNSRecord.question("bob.site.shoal")
    r = DNSRecord.parse(refuse(bytes(q.pack())))
    assert r.header.rcode == RCODE.REFUSED and r.header.id == q.header.id and not r.rr
    assert refuse(b"\x01\x02") is None
    assert refuse(bytes(q.reply().pack())) is None
