"""Where pre-auth keys are kept: the ``auth_keys`` table (migration 4) of the
server's store, SQLite or PostgreSQL.

``auth_key_store(store)`` gives the key table of a server's store. Keys are
read at each new registration and written by ``shoal server key`` while the
server may be running, so nothing here is cached. SQLite answers at once;
PostgreSQL's methods are coroutines (callers await what is awaitable).
Using a key is one atomic ``UPDATE``, so a single-use key admits one node even
when several servers of a cluster see it at the same moment.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

from shoal.server.auth_keys import AuthKeyRecord

COLUMNS = "id, secret_hash, reusable, expires, network, created, uses, revoked"
USE = ("UPDATE auth_keys SET uses = uses + 1 WHERE id={} AND revoked=0 "
       "AND (reusable=1 OR uses=0)")
STALE_NODES = ("SELECT public_key FROM nodes WHERE last_seen < {} AND public_key NOT IN "
               "(SELECT owner FROM networks)")
FORGET = ("DELETE FROM routes WHERE gateway={0}", "DELETE FROM members WHERE public_key={0}",
          "DELETE FROM presence WHERE public_key={0}", "DELETE FROM nodes WHERE public_key={0}")


def _record(r: Any) -> AuthKeyRecord:
    return AuthKeyRecord(str(r[0]), str(r[1]), bool(r[2]), r[3], r[4], float(r[5]), int(r[6]),
                         bool(r[7]))


def _row(k: AuthKeyRecord) -> tuple[Any, ...]:
    return (k.id, k.secret_hash, int(k.reusable), k.expires, k.network, k.created, k.uses,
            int(k.revoked))


class SqliteAuthKeys:
    def __init__(self, db: sqlite3.Connection, lock: threading.Lock) -> None:
        self._db = db
        self._lock = lock

    def put(self, k: AuthKeyRecord) -> None:
        with self._lock:
            self._db.execute("INSERT INTO auth_keys VALUES (?,?,?,?,?,?,?,?)", _row(k))

    def all(self) -> list[AuthKeyRecord]:
        return [_record(r) for r in self._db.execute(
            f"SELECT {COLUMNS} FROM auth_keys ORDER BY created")]

    def get(self, kid: str) -> AuthKeyRecord | None:
        r = self._db.execute(f"SELECT {COLUMNS} FROM auth_keys WHERE id=?", (kid,)).fetchone()
        return None if r is None else _record(r)

    def use(self, kid: str) -> bool:
        """Count one use; False if the key is used up or revoked."""
        with self._lock:
            return self._db.execute(USE.format("?"), (kid,)).rowcount == 1

    def revoke(self, kid: str) -> bool:
        with self._lock:
            cur = self._db.execute("UPDATE auth_keys SET revoked=1 WHERE id=?", (kid,))
        return cur.rowcount == 1

    def prune_nodes(self, before: float) -> list[str]:
        """Forget nodes last seen before ``before`` that own no network; their keys."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                keys = [r[0] for r in self._db.execute(STALE_NODES.format("?"), (before,))]
                for k in keys:
                    for sql in FORGET:
                        self._db.execute(sql.format("?"), (k,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return keys


class PostgresAuthKeys:
    def __init__(self, store: Any) -> None:
        self._store = store     # a PostgresStore (its pool; StoreUnavailable when down)

    async def put(self, k: AuthKeyRecord) -> None:
        await self._store._fetch(lambda c: c.execute(
            "INSERT INTO auth_keys VALUES ($1,$2,$3,$4,$5,$6,$7,$8)", *_row(k)))

    async def all(self) -> list[AuthKeyRecord]:
        rows = await self._store._fetch(lambda c: c.fetch(
            f"SELECT {COLUMNS} FROM auth_keys ORDER BY created"))
        return [_record(r) for r in rows]

    async def get(self, kid: str) -> AuthKeyRecord | None:
        r = await self._store._fetch(lambda c: c.fetchrow(
            f"SELECT {COLUMNS} FROM auth_keys WHERE id=$1", kid))
        return None if r is None else _record(r)

    async def use(self, kid: str) -> bool:
        status = await self._store._fetch(lambda c: c.execute(USE.format("$1"), kid))
        return bool(status == "UPDATE 1")

    async def revoke(self, kid: str) -> bool:
        status = await self._store._fetch(lambda c: c.execute(
            "UPDATE auth_keys SET revoked=1 WHERE id=$1", kid))
        return bool(status == "UPDATE 1")

    async def prune_nodes(self, before: float) -> list[str]:
        async def go(c: Any) -> list[str]:
            async with c.transaction():
                keys = [r[0] for r in await c.fetch(STALE_NODES.format("$1"), before)]
                for k in keys:
                    for sql in FORGET:
                        await c.execute(sql.format("$1"), k)
                return keys
        return await self._store._fetch(go)  # type: ignore[no-any-return]


class NoAuthKeys:
    """A store without a key table (the in-memory store of tests and benchmarks)."""

    def get(self, kid: str) -> AuthKeyRecord | None:
        return None

    def use(self, kid: str) -> bool:
        return False


def auth_key_store(store: Any) -> Any:
    inner = getattr(store, "inner", store)   # a TimedStore wraps the real one
    db = getattr(inner, "_db", None)
    if isinstance(db, sqlite3.Connection):
        return SqliteAuthKeys(db, inner._lock)
    if getattr(inner, "pool", None) is not None or type(inner).__name__ == "PostgresStore":
        return PostgresAuthKeys(inner)
    return NoAuthKeys()
