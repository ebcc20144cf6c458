"""RFC 5780 classification against fake NATs (no sockets)."""

import asyncio

import pytest

from shoal.server import discovery as d
from shoal_traversal_ice.nat_discovery import ADM, APDM, EIM, classify

SERVER = [("203.0.113.10", 3478), ("203.0.113.10", 3479), ("203.0.113.11", 3478),
          ("203.0.113.11", 3479)]


class FakeNat:
    """One inside socket behind a NAT with the given mapping and filtering behaviour."""

    def __init__(self, mapping: str, filtering: str, public_ip: str = "198.51.100.7") -> None:
        self.mapping, self.filtering, self.ip = mapping, filtering, public_ip
        self.ports: dict[object, int] = {}
        self.sent_to: set[tuple[str, int]] = set()

    def _map(self, dst: tuple[str, int]) -> tuple[str, int]:
        key = {EIM: None, ADM: dst[0], APDM: dst}[self.mapping]
        port = self.ports.setdefault(key, 40000 + len(self.ports))
        return (self.ip, port)

    def _allowed(self, src: tuple[str, int]) -> bool:
        if self.filtering == EIM:
            return True
        if self.filtering == ADM:
            return any(src[0] == ip for ip, _ in self.sent_to)
        return src in self.sent_to

    async def ask(self, index: int, flags: int):
        dst = SERVER[index]
        self.sent_to.add(dst)
        mapped = self._map(dst)
        j = d.pick_responder(SERVER, index, flags)
        if j < 0 or not self._allowed(SERVER[j]):
            return None
        return mapped


@pytest.mark.parametrize("mapping", [EIM, ADM, APDM])
@pytest.mark.parametrize("filtering", [EIM, ADM, APDM])
def test_classifies_every_combination(mapping, filtering):
    nat = FakeNat(mapping, filtering)
    r = asyncio.run(classify(nat.ask, 4, ["192.168.1.2"]))
    assert (r.mapping, r.filtering) == (mapping, filtering)
    assert r.udp and r.public[0] == "198.51.100.7"


def test_udp_blocked():
    async def nothing(index, flags):
        return None
    r = asyncio.run(classify(nothing, 4, []))
    assert r.udp is False and r.mapping == "unknown"


def test_no_nat_and_trickle():
    seen = []

    async def direct(index, flags):
        return ("203.0.113.50", 41641)
    r = asyncio.run(classify(direct, 4, ["203.0.113.50"], seen.append))
    assert r.mapping == EIM and seen == [("203.0.113.50", 41641)]
