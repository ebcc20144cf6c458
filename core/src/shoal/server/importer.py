"""``shoal server import --from SQLITE``: move a single server's state into PostgreSQL.

Nodes (with their addresses), networks, members and routes are copied in one
transaction, into a database that has none yet (an import never merges two
states: addresses could collide). Presence is not copied: it is rebuilt as
nodes log in again.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg

from shoal.errors import ShoalError
from shoal.server.pg_store import MEMBER_COLS, NET_COLS, NODE_COLS, ROUTE_COLS, connect, migrate
from shoal.server.store import SqliteStore


async def import_sqlite(sqlite_file: str, url: str) -> tuple[int, int, int]:
    """Copy the state; returns (nodes, networks, members) copied."""
    if not Path(sqlite_file).is_file():
        raise ShoalError(f"{sqlite_file}: no such SQLite database")
    src = SqliteStore(sqlite_file)
    try:
        nodes, nets, members = src.load()
        routes = src.load_routes()
    finally:
        src.close()
    conn = await connect(url)
    try:
        await migrate(conn)
        async with conn.transaction():
            if await conn.fetchval("SELECT COUNT(*) FROM nodes"):
                raise ShoalError("the PostgreSQL database already holds nodes; import into an "
                                 "empty database")
            await conn.executemany(
                f"INSERT INTO nodes ({NODE_COLS}) VALUES ($1,$2,$3,$4,$5)",
                [(n.public_key, n.name, n.virtual_ip, n.created, n.last_seen) for n in nodes])
            await conn.executemany(
                f"INSERT INTO networks ({NET_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7)",
                [(n.name, n.password_hash, n.owner, n.join_mode, n.member_limit, n.type,
                  n.created) for n in nets])
            await conn.executemany(
                f"INSERT INTO members ({MEMBER_COLS}) VALUES ($1,$2,$3,$4,$5,$6)",
                [(x.network, x.public_key, x.status, int(x.hub), x.joined, x.lan_route)
                 for x in members])
            await conn.executemany(
                f"INSERT INTO routes ({ROUTE_COLS}) VALUES ($1,$2,$3,$4,$5,$6)",
                [(r.network, r.prefix, r.gateway, int(r.approved), int(r.masquerade), r.created)
                 for r in routes])
    except asyncpg.PostgresError as e:
        raise ShoalError(f"import failed: {e}") from None
    finally:
        await conn.close()
    return len(nodes), len(nets), len(members)
