import sqlite3

from shoal.server.passwords import hash_password, verify_password
from shoal.server.store import MIGRATIONS, MemberRecord, NetworkRecord, NodeRecord, SqliteStore


def test_password_hash_roundtrip_and_salted():
    h1, h2 = hash_password("secret", n=1 << 10), hash_password("secret", n=1 << 10)
    assert h1 != h2 and "secret" not in h1
    assert verify_password("secret", h1) and not verify_password("Secret", h1)
    assert not verify_password("secret", "garbage") and not verify_password("x", "scrypt$1$2")


def test_store_roundtrip_and_migrations(tmp_path):
    db = tmp_path / "s.db"
    s = SqliteStore(db)
    assert s.schema_version == len(MIGRATIONS)
    s.put_node(NodeRecord("k1", "alice", "100.64.0.1", 1.0, 1.0))
    s.put_node(NodeRecord("k1", "alice2", "100.64.0.1", 1.0, 2.0))  # rename keeps the address
    s.put_network(NetworkRecord("lan", "h", "k1", "open", 10, "mesh", 1.0))
    s.put_member(MemberRecord("lan", "k1", "active", True, 1.0))
    s.close()
    s = SqliteStore(db)  # reopening applies no migration twice
    nodes, nets, members = s.load()
    assert nodes == [NodeRecord("k1", "alice2", "100.64.0.1", 1.0, 2.0)]
    assert nets[0].name == "lan" and members[0].hub is True
    s.delete_network("lan")
    assert s.load()[2] == []  # members cascade
    s.close()


def test_address_is_unique_in_the_schema(tmp_path):
    s = SqliteStore(tmp_path / "s.db")
    s.put_node(NodeRecord("k1", "a", "100.64.0.1", 1.0, 1.0))
    try:
        s.put_node(NodeRecord("k2", "b", "100.64.0.1", 1.0, 1.0))
    except sqlite3.IntegrityError:
        pass
    else:
        raise AssertionError("two keys got the same address")
