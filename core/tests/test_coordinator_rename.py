"""A node that logs in again under a new name (even replacing a live session) is
announced to every neighbour under that name at once (names follow renames)."""

from shoal.control import messages as m
from shoal.identity import StaticKeypair
from shoal.server.coordinator import Coordinator
from shoal.server.store import MemoryStore


def test_relogin_with_new_name_reaches_neighbours():
    c = Coordinator(MemoryStore(), clock=lambda: 1000.0)
    a, b = StaticKeypair.generate().public_b64, StaticKeypair.generate().public_b64
    c.login(a, m.Hello(name="alice"))
    c.login(b, m.Hello(name="bob"))
    c.create(a, m.CreateArgs(name="lan", password="pw"), "hash")
    c.join(b, "lan", True)
    _, out = c.login(b, m.Hello(name="robert"))        # no logout in between
    ups = [p for k, msg in out if k == a and isinstance(msg, m.Peers) for p in msg.up]
    assert [(p.public_key, p.name) for p in ups] == [(b, "robert")]
