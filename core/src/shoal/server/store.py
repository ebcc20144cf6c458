"""Server state behind a small store interface; SQLite by default.

The coordinator keeps the working set in memory and writes every change
through a ``Store``. The interface is deliberately row-shaped (no SQLite-isms
leak out), so a PostgreSQL store shared by several servers can implement it.

Schema changes are numbered migrations applied in order inside one
transaction each; ``schema_version`` records the last one applied.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Protocol

JoinMode = Literal["open", "approval", "locked"]
NetworkType = Literal["mesh", "hub-and-spoke", "gateway"]
MemberStatus = Literal["active", "pending"]


@dataclass(frozen=True)
class NodeRecord:
    public_key: str          # base64
    name: str
    virtual_ip: str
    created: float
    last_seen: float


@dataclass(frozen=True)
class NetworkRecord:
    name: str
    password_hash: str
    owner: str               # public key (base64)
    join_mode: JoinMode
    member_limit: int
    type: NetworkType
    created: float


@dataclass(frozen=True)
class MemberRecord:
    network: str
    public_key: str
    status: MemberStatus
    hub: bool
    joined: float
    lan_route: str | None = None   # gateway networks: the LAN this member announces

    def with_(self, **kw: object) -> MemberRecord:
        return replace(self, **kw)  # type: ignore[arg-type]


@dataclass(frozen=True)
class RouteRecord:
    """A LAN prefix announced by a member (the gateway) of a gateway network."""

    network: str
    prefix: str              # canonical IPv4 network, e.g. "192.168.50.0/24"
    gateway: str             # public key (base64) of the announcing member
    approved: bool
    masquerade: bool
    created: float

    def with_(self, **kw: object) -> RouteRecord:
        return replace(self, **kw)  # type: ignore[arg-type]


class Store(Protocol):
    def load(self) -> tuple[list[NodeRecord], list[NetworkRecord], list[MemberRecord]]: ...
    def put_node(self, n: NodeRecord) -> None: ...
    def put_network(self, n: NetworkRecord) -> None: ...
    def delete_network(self, name: str) -> None: ...
    def put_member(self, m: MemberRecord) -> None: ...
    def delete_member(self, network: str, public_key: str) -> None: ...
    def load_routes(self) -> list[RouteRecord]: ...
    def put_route(self, r: RouteRecord) -> None: ...
    def delete_route(self, network: str, prefix: str) -> None: ...
    def close(self) -> None: ...


MIGRATIONS: list[str] = [
    # 1: initial schema
    """
    CREATE TABLE nodes (
        public_key TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        virtual_ip TEXT NOT NULL UNIQUE,
        created    REAL NOT NULL,
        last_seen  REAL NOT NULL
    );
    CREATE TABLE networks (
        name          TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        owner         TEXT NOT NULL REFERENCES nodes(public_key),
        join_mode     TEXT NOT NULL CHECK (join_mode IN ('open', 'approval', 'locked')),
        member_limit  INTEGER NOT NULL,
        type          TEXT NOT NULL CHECK (type IN ('mesh', 'hub-and-spoke', 'gateway')),
        created       REAL NOT NULL
    );
    CREATE TABLE members (
        network    TEXT NOT NULL REFERENCES networks(name) ON DELETE CASCADE,
        public_key TEXT NOT NULL REFERENCES nodes(public_key),
        status     TEXT NOT NULL CHECK (status IN ('active', 'pending')),
        hub        INTEGER NOT NULL DEFAULT 0,
        joined     REAL NOT NULL,
        lan_route  TEXT,
        PRIMARY KEY (network, public_key)
    );
    CREATE INDEX members_by_key ON members(public_key);
    """,
    # 2: gateway routes, announced by a member and approved by the owner. A route set
    # with the older "network set --gateway --lan-route" was the owner's own decision:
    # it is carried over as approved.
    """
    CREATE TABLE routes (
        network    TEXT NOT NULL REFERENCES networks(name) ON DELETE CASCADE,
        prefix     TEXT NOT NULL,
        gateway    TEXT NOT NULL REFERENCES nodes(public_key),
        approved   INTEGER NOT NULL DEFAULT 0,
        masquerade INTEGER NOT NULL DEFAULT 0,
        created    REAL NOT NULL,
        PRIMARY KEY (network, prefix)
    );
    INSERT INTO routes (network, prefix, gateway, approved, masquerade, created)
        SELECT network, lan_route, public_key, 1, 0, joined FROM members
        WHERE lan_route IS NOT NULL;
    UPDATE members SET lan_route = NULL
    """,
]


class SqliteStore:
    """Embedded, zero set-up. Writes are synchronous and small (one row each)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self.migrate()

    @property
    def schema_version(self) -> int:
        self._db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = self._db.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def migrate(self) -> None:
        current = self.schema_version
        for version, script in enumerate(MIGRATIONS, start=1):
            if version <= current:
                continue
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for stmt in script.split(";"):
                        if stmt.strip():
                            self._db.execute(stmt)
                    self._db.execute("INSERT INTO schema_version VALUES (?)", (version,))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise

    def load(self) -> tuple[list[NodeRecord], list[NetworkRecord], list[MemberRecord]]:
        db = self._db
        nodes = [NodeRecord(*r) for r in db.execute(
            "SELECT public_key, name, virtual_ip, created, last_seen FROM nodes")]
        nets = [NetworkRecord(*r) for r in db.execute(
            "SELECT name, password_hash, owner, join_mode, member_limit, type, created FROM networks")]
        members = [MemberRecord(r[0], r[1], r[2], bool(r[3]), r[4], r[5]) for r in db.execute(
            "SELECT network, public_key, status, hub, joined, lan_route FROM members")]
        return nodes, nets, members

    def _exec(self, sql: str, args: tuple[object, ...]) -> None:
        with self._lock:
            self._db.execute(sql, args)

    def put_node(self, n: NodeRecord) -> None:
        self._exec("INSERT INTO nodes VALUES (?,?,?,?,?) ON CONFLICT(public_key) DO UPDATE SET "
                   "name=excluded.name, last_seen=excluded.last_seen",
                   (n.public_key, n.name, n.virtual_ip, n.created, n.last_seen))

    def put_network(self, n: NetworkRecord) -> None:
        self._exec("INSERT OR REPLACE INTO networks VALUES (?,?,?,?,?,?,?)",
                   (n.name, n.password_hash, n.owner, n.join_mode, n.member_limit, n.type,
                    n.created))

    def delete_network(self, name: str) -> None:
        self._exec("DELETE FROM networks WHERE name=?", (name,))

    def put_member(self, m: MemberRecord) -> None:
        self._exec("INSERT OR REPLACE INTO members VALUES (?,?,?,?,?,?)",
                   (m.network, m.public_key, m.status, int(m.hub), m.joined, m.lan_route))

    def delete_member(self, network: str, public_key: str) -> None:
        self._exec("DELETE FROM members WHERE network=? AND public_key=?", (network, public_key))

    def load_routes(self) -> list[RouteRecord]:
        return [RouteRecord(r[0], r[1], r[2], bool(r[3]), bool(r[4]), r[5]) for r in
                self._db.execute("SELECT network, prefix, gateway, approved, masquerade, created "
                                 "FROM routes")]

    def put_route(self, r: RouteRecord) -> None:
        self._exec("INSERT OR REPLACE INTO routes VALUES (?,?,?,?,?,?)",
                   (r.network, r.prefix, r.gateway, int(r.approved), int(r.masquerade),
                    r.created))

    def delete_route(self, network: str, prefix: str) -> None:
        self._exec("DELETE FROM routes WHERE network=? AND prefix=?", (network, prefix))

    def close(self) -> None:
        self._db.close()


class MemoryStore:
    """A Store that keeps nothing: for unit tests and benchmarks of the rules."""

    def __init__(self) -> None:
        self.writes = 0

    def load(self) -> tuple[list[NodeRecord], list[NetworkRecord], list[MemberRecord]]:
        return [], [], []

    def put_node(self, n: NodeRecord) -> None:
        self.writes += 1

    def put_network(self, n: NetworkRecord) -> None:
        self.writes += 1

    def delete_network(self, name: str) -> None:
        self.writes += 1

    def put_member(self, m: MemberRecord) -> None:
        self.writes += 1

    def delete_member(self, network: str, public_key: str) -> None:
        self.writes += 1

    def load_routes(self) -> list[RouteRecord]:
        return []

    def put_route(self, r: RouteRecord) -> None:
        self.writes += 1

    def delete_route(self, network: str, prefix: str) -> None:
        self.writes += 1

    def close(self) -> None:
        pass
