"""Who may learn which names: this host everything, a peer only its shared networks."""

from types import SimpleNamespace

from dnslib import RCODE, DNSRecord
from shoal_names_dns.answer import refuse
from shoal_names_dns.plugin import members_of, visible_to
from shoal_names_dns.zone import build


def info(name, key, ip, nets):
    return SimpleNamespace(name=name, public_key=key * 43 + "=", virtual_ip=ip, networks=nets)


NODE = SimpleNamespace(
    virtual_ip="100.64.0.2",
    keypair=SimpleNamespace(public_b64="m" * 43 + "="),
    cfg=SimpleNamespace(name="me"),
    control=SimpleNamespace(state=SimpleNamespace(networks=[
        SimpleNamespace(name="site", role="owner"), SimpleNamespace(name="other", role="member"),
        SimpleNamespace(name="club", role="pending")])),
    server_peers={1: info("bob", "b", "100.64.0.3", ["site"]),
                  2: info("eve", "e", "100.64.0.4", ["other"])})


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
