"""The store contract, run against SQLite and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from shoal.server.migrations import MIGRATIONS
from shoal.server.store import (
    MemberRecord,
    NetworkRecord,
    NodeRecord,
    SqliteStore,
    Store,
    is_postgres,
    open_store,
    sqlite_path,
)

Opener = Callable[[], Awaitable[Store]]


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Any) -> Opener:
    if request.param == "sqlite":
        db = str(tmp_path / "s.db")
    else:
        db = request.getfixturevalue("pg_url")

    async def open_() -> Store:
        return await open_store(db, str(tmp_path), server_id="s1", listen="127.0.0.1:1")
    return open_


async def _settle(s: Store) -> None:
    flush = getattr(s, "flush", None)
    if flush is not None:
        await flush()


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_roundtrip_and_migrations_once(opener: Opener) -> None:
    async def main() -> None:
        s = await opener()
        s.put_node(NodeRecord("k1", "alice", "100.64.0.1", 1.0, 1.0))
        s.put_node(NodeRecord("k1", "alice2", "100.64.0.1", 1.0, 2.0))  # rename keeps the address
        s.put_network(NetworkRecord("lan", "h", "k1", "open", 10, "mesh", 1.0))
        s.put_member(MemberRecord("lan", "k1", "active", True, 1.0))
        s.put_network(NetworkRecord("lan", "h2", "k1", "approval", 5, "mesh", 1.0))
        await _settle(s)
        await s.aclose()
        s = await opener()  # reopening applies no migration twice
        nodes, nets, members = s.load()
        assert nodes == [NodeRecord("k1", "alice2", "100.64.0.1", 1.0, 2.0)]
        assert nets == [NetworkRecord("lan", "h2", "k1", "approval", 5, "mesh", 1.0)]
        assert members == [MemberRecord("lan", "k1", "active", True, 1.0)]  # upsert kept it
        s.delete_network("lan")
        await _settle(s)
        await s.aclose()
        s = await opener()
        assert s.load()[2] == []  # members cascade
        await s.aclose()
    run(main())


def test_claim_node_unique_address_and_existing_key(opener: Opener) -> None:
    async def main() -> None:
        s = await opener()
        a = NodeRecord("k1", "a", "100.64.0.1", 1.0, 1.0)
        assert await s.claim_node(a) == a
        # the same key again: the stored record wins (its address is for good)
        assert await s.claim_node(NodeRecord("k1", "a", "100.64.0.9", 2.0, 2.0)) == a
        # another key on a taken address: refused, the caller retries elsewhere
        assert await s.claim_node(NodeRecord("k2", "b", "100.64.0.1", 1.0, 1.0)) is None
        await s.aclose()
    run(main())


def test_member_limit_and_network_name_in_the_database(opener: Opener) -> None:
    async def main() -> None:
        s = await opener()
        for i in range(4):
            assert await s.claim_node(NodeRecord(f"k{i}", f"n{i}", f"100.64.0.{i + 1}", 1, 1))
        net = NetworkRecord("lan", "h", "k0", "open", 2, "mesh", 1.0)
        owner = MemberRecord("lan", "k0", "active", False, 1.0)
        assert await s.create_network(net, owner)
        assert not await s.create_network(net, owner)   # the name is taken
        assert await s.add_member(MemberRecord("lan", "k1", "active", False, 2.0), 2)
        assert not await s.add_member(MemberRecord("lan", "k2", "active", False, 3.0), 2)
        assert await s.add_member(MemberRecord("lan", "k2", "pending", False, 3.0), 2)
        # re-activating a member already counted is not a new seat
        assert await s.add_member(MemberRecord("lan", "k1", "active", False, 2.0), 2)
        await s.aclose()
        s = await opener()
        _, _, members = s.load()
        assert sorted((m.public_key, m.status) for m in members) == [
            ("k0", "active"), ("k1", "active"), ("k2", "pending")]
        await s.aclose()
    run(main())


def test_postgres_url_is_never_a_sqlite_path(tmp_path: Any) -> None:
    url = "postgresql://shoal@db.example/shoal"
    assert is_postgres(url) and not is_postgres(str(tmp_path / "x.db"))
    with pytest.raises(ValueError):
        sqlite_path(url, str(tmp_path))
    with pytest.raises(ValueError):
        SqliteStore(url)
    assert not (tmp_path / "postgresql:").exists()


def test_sqlite_schema_has_every_migration(tmp_path: Any) -> None:
    s = SqliteStore(tmp_path / "s.db")
    assert s.schema_version == len(MIGRATIONS)
    s.put_node(NodeRecord("k1", "a", "100.64.0.1", 1.0, 1.0))
    with pytest.raises(sqlite3.IntegrityError):
        s.put_node(NodeRecord("k2", "b", "100.64.0.1", 1.0, 1.0))
    s.close()
