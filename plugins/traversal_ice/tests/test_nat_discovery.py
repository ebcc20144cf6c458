"""RFC 5780 classification against fake NATs, through the STUN path (no sockets).

The node's ``StunClient`` sends real STUN bytes; a fake NAT rewrites the
source and filters answers; the coordination server's sans-IO ``answer``
replies from the endpoint CHANGE-REQUEST asks for.
"""

import asyncio

import pytest
from shoal import stun
from shoal.server import discovery as d
from shoal.stun_client import StunClient
from shoal_traversal_ice.nat_discovery import (
    ADM,
    APDM,
    EIM,
    UNKNOWN,
    ServerView,
    StunAsker,
    discover,
)

SERVER = [("203.0.113.10", 3478), ("203.0.113.10", 3479), ("203.0.113.11", 3478),
          ("203.0.113.11", 3479)]
COTURN = [("203.0.113.20", 3478), ("203.0.113.20", 3479), ("203.0.113.21", 3478),
          ("203.0.113.21", 3479)]


class FakeNet:
    """One inside socket behind a NAT, STUN servers on the far side."""

    def __init__(self, mapping: str, filtering: str, public_ip: str = "198.51.100.7",
                 servers=(SERVER,), ignore_change: bool = False) -> None:
        self.mapping, self.filtering, self.ip = mapping, filtering, public_ip
        self.groups = [list(g) for g in servers]
        self.ports: dict[object, int] = {}
        self.sent_to: set[tuple[str, int]] = set()
        self.ignore_change = ignore_change
        self.client = StunClient(self.send)
        self.delivered = 0

    def _map(self, dst):
        key = {EIM: None, ADM: dst[0], APDM: dst}[self.mapping]
        return (self.ip, self.ports.setdefault(key, 40000 + len(self.ports)))

    def _allowed(self, src) -> bool:
        if self.filtering == EIM:
            return True
        if self.filtering == ADM:
            return any(src[0] == ip for ip, _ in self.sent_to)
        return src in self.sent_to

    def send(self, data: bytes, dst) -> None:
        self.sent_to.add(dst)
        mapped = self._map(dst)
        for group in self.groups:
            if dst in group:
                if self.ignore_change:
                    msg = stun.decode(data)
                    msg.attributes.pop("CHANGE-REQUEST", None)
                    msg.attributes.pop("FINGERPRINT", None)
                    data = stun.encode(msg)
                reply = d.answer(group, group.index(dst), data, mapped)
                src = group[reply.responder]
                if self._allowed(src):
                    asyncio.get_running_loop().call_soon(self._deliver, reply.data, src)

    def _deliver(self, data, src):
        self.delivered += 1
        assert self.client.on_datagram(data, src)


def run(net: FakeNet, servers, local_ips=("192.168.1.2",), on_public=None):
    views = [(s, ServerView(server=f"{s[0]}:{s[1]}", origin="test")) for s in servers]
    return asyncio.run(discover(StunAsker(net.client, 2, 0.02), views, list(local_ips), on_public))


@pytest.mark.parametrize("mapping", [EIM, ADM, APDM])
@pytest.mark.parametrize("filtering", [EIM, ADM, APDM])
def test_classifies_every_combination(mapping, filtering):
    net = FakeNet(mapping, filtering)
    r = run(net, [SERVER[0]])
    assert (r.mapping, r.filtering) == (mapping, filtering)
    assert r.udp and r.public[0] == "198.51.100.7" and r.server == "203.0.113.10:3478"
    v = r.servers[0]
    assert v.reachable and v.rfc5780 and (v.mapping, v.filtering) == (mapping, filtering)
    assert v.rtt_ms is not None


def test_udp_blocked():
    class Blocked(FakeNet):
        def send(self, data, dst):
            pass

    r = run(Blocked(EIM, EIM), [SERVER[0]])
    assert r.udp is False and r.mapping == UNKNOWN
    assert r.servers[0].error == "no answer" and not r.servers[0].reachable


def test_no_nat_and_trickle():
    seen = []
    net = FakeNet(EIM, APDM, public_ip="203.0.113.50")
    r = run(net, [SERVER[0]], local_ips=["203.0.113.50"], on_public=seen.append)
    assert r.mapping == EIM and seen == [("203.0.113.50", 40000)]


def test_plain_stun_server_gives_the_public_endpoint_only():
    net = FakeNet(EIM, EIM, servers=([SERVER[0]],))
    r = run(net, [SERVER[0]])
    assert r.public == ("198.51.100.7", 40000) and r.udp
    assert (r.mapping, r.filtering) == (UNKNOWN, UNKNOWN) and not r.servers[0].rfc5780


def test_server_that_ignores_change_request_does_not_open_the_nat():
    net = FakeNet(APDM, APDM, ignore_change=True)
    r = run(net, [SERVER[0]])
    assert r.filtering != EIM


def test_first_complete_server_decides_and_the_others_answer_test_one():
    # the coordination server is unreachable; coturn classifies; a plain server is asked too
    net = FakeNet(ADM, ADM, servers=(COTURN, [("198.51.100.99", 3478)]))
    r = run(net, [SERVER[0], COTURN[0], ("198.51.100.99", 3478)])
    assert (r.mapping, r.filtering) == (ADM, ADM) and r.server == "203.0.113.20:3478"
    unreachable, coturn, plain = r.servers
    assert not unreachable.reachable and unreachable.error == "no answer"
    assert coturn.reachable and coturn.mapping == ADM
    assert plain.reachable and plain.mapping is None and plain.public[0] == "198.51.100.7"
    assert r.as_dict()["stun"][1]["server"] == "203.0.113.20:3478"
