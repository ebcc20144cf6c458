"""Gateway routes in the store, on SQLite and a real PostgreSQL: round trip, removal,
cascade with the network, and the carry-over of routes set with ``lan_route``."""

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
    RouteRecord,
    SqliteStore,
    Store,
    open_store,
)

Opener = Callable[[], Awaitable[Store]]


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Any) -> Opener:
    db = str(tmp_path / "s.db") if request.param == "sqlite" \
        else request.getfixturevalue("pg_url")

    async def open_() -> Store:
        return await open_store(db, str(tmp_path), server_id="s1", listen="127.0.0.1:1")
    return open_


async def _reopen(s: Store, opener: Opener) -> Store:
    flush = getattr(s, "flush", None)
    if flush is not None:
        await flush()
    await s.aclose()
    return await opener()


def test_routes_round_trip_remove_and_cascade(opener: Opener) -> None:
    async def main() -> None:
        s = await opener()
        s.put_node(NodeRecord("k1", "gw", "100.64.0.1", 1.0, 1.0))
        s.put_network(NetworkRecord("site", "h", "k1", "open", 10, "gateway", 1.0))
        s.put_route(RouteRecord("site", "192.168.50.0/24", "k1", False, True, 2.0))
        s.put_route(RouteRecord("site", "192.168.60.0/24", "k1", False, False, 3.0))
        s.put_route(RouteRecord("site", "192.168.50.0/24", "k1", True, True, 2.0))  # approve
        s.delete_route("site", "192.168.60.0/24")
        s = await _reopen(s, opener)
        assert s.load_routes() == [RouteRecord("site", "192.168.50.0/24", "k1", True, True, 2.0)]
        s.delete_network("site")
        s = await _reopen(s, opener)
        assert s.load_routes() == []
        await s.aclose()
    asyncio.run(main())


def test_lan_route_of_an_older_schema_becomes_an_approved_route(tmp_path: Any) -> None:
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.executescript(MIGRATIONS[0].sql + """
        CREATE TABLE schema_version (version INTEGER NOT NULL);
        INSERT INTO schema_version VALUES (1);
        INSERT INTO nodes VALUES ('k1', 'gw', '100.64.0.1', 1.0, 1.0);
        INSERT INTO networks VALUES ('site', 'h', 'k1', 'open', 10, 'gateway', 1.0);
        INSERT INTO members VALUES ('site', 'k1', 'active', 0, 5.0, '10.7.0.0/16');
    """)
    con.close()
    s = SqliteStore(db)
    assert s.load_routes() == [RouteRecord("site", "10.7.0.0/16", "k1", True, False, 5.0)]
    assert s.load()[2] == [MemberRecord("site", "k1", "active", False, 5.0, None)]
    s.close()
