"""Server state behind a small store interface: SQLite by default, PostgreSQL for clusters.

The coordinator keeps the working set in memory and writes every change
through a ``Store`` (``put_*``/``delete_*``, synchronous: SQLite writes at
once; PostgreSQL queues the write for an ordered writer task). The few
operations whose outcome depends on other servers are asynchronous and
decided *in the database* (``claim_node``: a unique address, by constraint
plus retry; ``add_member``: the member limit, under a row lock;
``create_network``: a unique name), so they hold however many servers share
the state.

``open_store`` picks the engine from ``database``: a ``postgresql://`` URL is
never a file name. Schema changes are the numbered migrations of
``migrations.py``, the same for both engines, applied at start.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from shoal.errors import ShoalError
from shoal.server.migrations import MIGRATIONS as _MIGRATIONS

JoinMode = Literal["open", "approval", "locked"]
NetworkType = Literal["mesh", "hub-and-spoke", "gateway"]
MemberStatus = Literal["active", "pending"]

MIGRATIONS = _MIGRATIONS
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class StoreUnavailable(ShoalError):
    """The database cannot be reached right now (the caller retries later)."""


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


@dataclass(frozen=True)
class PresenceRecord:
    """A node online at some server of the cluster (PostgreSQL only)."""
    public_key: str
    server_id: str
    endpoints: list[str]
    nat: dict[str, Any]


Snapshot = tuple[list[NodeRecord], list[NetworkRecord], list[MemberRecord]]


class Store(Protocol):
    cluster: bool      # True when other servers may share this state

    def load(self) -> Snapshot: ...
    def put_node(self, n: NodeRecord) -> None: ...
    def put_network(self, n: NetworkRecord) -> None: ...
    def delete_network(self, name: str) -> None: ...
    def put_member(self, m: MemberRecord) -> None: ...
    def delete_member(self, network: str, public_key: str) -> None: ...
    def load_routes(self) -> list[RouteRecord]: ...
    def put_route(self, r: RouteRecord) -> None: ...
    def delete_route(self, network: str, prefix: str) -> None: ...
    def set_presence(self, key: str, endpoints: list[str], nat: dict[str, Any]) -> None: ...
    def clear_presence(self, key: str) -> None: ...
    async def claim_node(self, n: NodeRecord) -> NodeRecord | None: ...
    async def add_member(self, m: MemberRecord, limit: int) -> bool: ...
    async def create_network(self, net: NetworkRecord, owner: MemberRecord) -> bool: ...
    async def aclose(self) -> None: ...
    def close(self) -> None: ...


def is_postgres(database: str | None) -> bool:
    return bool(database) and database.startswith(POSTGRES_SCHEMES)  # type: ignore[union-attr]


def sqlite_path(database: str | None, state_dir: str) -> str:
    if is_postgres(database):
        raise ValueError("a PostgreSQL URL is not a SQLite path")
    return database or str(Path(state_dir) / "shoal.db")


async def open_store(database: str | None, state_dir: str, server_id: str = "",
                     listen: str = "") -> Store:
    """The store ``database`` names (a ``postgresql://`` URL or a SQLite path; default
    ``STATE_DIR/shoal.db``), migrated to the current schema."""
    if is_postgres(database):
        from shoal.server.pg_store import PostgresStore

        return await PostgresStore.open(database, server_id, listen)  # type: ignore[arg-type]
    return SqliteStore(sqlite_path(database, state_dir))


class SqliteStore:
    """Embedded, zero set-up, one server. Writes are synchronous and small (one row each)."""

    cluster = False

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if is_postgres(self.path):
            raise ValueError("a PostgreSQL URL is not a SQLite path")
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._lock = threading.RLock()
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self.migrate()
        except sqlite3.DatabaseError as e:
            raise ShoalError(f"{self.path}: cannot open the SQLite database: {e}") from None

    @property
    def schema_version(self) -> int:
        self._db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = self._db.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def migrate(self) -> list[int]:
        """Apply the migrations not applied yet; returns their numbers."""
        done = []
        current = self.schema_version
        for mig in MIGRATIONS:
            if mig.version <= current:
                continue
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for stmt in mig.statements("sqlite"):
                        self._db.execute(stmt)
                    self._db.execute("INSERT INTO schema_version VALUES (?)", (mig.version,))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            done.append(mig.version)
        return done

    def load(self) -> Snapshot:
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
        self._exec("INSERT INTO networks VALUES (?,?,?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET "
                   "password_hash=excluded.password_hash, owner=excluded.owner, "
                   "join_mode=excluded.join_mode, member_limit=excluded.member_limit, "
                   "type=excluded.type",
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

    def set_presence(self, key: str, endpoints: list[str], nat: dict[str, Any]) -> None:
        pass  # one server: presence lives in its memory only

    def clear_presence(self, key: str) -> None:
        pass

    async def claim_node(self, n: NodeRecord) -> NodeRecord | None:
        with self._lock:
            row = self._db.execute("SELECT public_key, name, virtual_ip, created, last_seen "
                                   "FROM nodes WHERE public_key=?", (n.public_key,)).fetchone()
            if row is not None:
                return NodeRecord(*row)
            try:
                self._db.execute("INSERT INTO nodes VALUES (?,?,?,?,?)",
                                 (n.public_key, n.name, n.virtual_ip, n.created, n.last_seen))
            except sqlite3.IntegrityError:
                return None
            return n

    async def add_member(self, m: MemberRecord, limit: int) -> bool:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if m.status == "active":
                    (count,) = self._db.execute(
                        "SELECT COUNT(*) FROM members WHERE network=? AND status='active' "
                        "AND public_key<>?", (m.network, m.public_key)).fetchone()
                    if count >= limit:
                        self._db.execute("ROLLBACK")
                        return False
                self.put_member(m)
                self._db.execute("COMMIT")
                return True
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    async def create_network(self, net: NetworkRecord, owner: MemberRecord) -> bool:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                try:
                    self._db.execute("INSERT INTO networks VALUES (?,?,?,?,?,?,?)",
                                     (net.name, net.password_hash, net.owner, net.join_mode,
                                      net.member_limit, net.type, net.created))
                except sqlite3.IntegrityError:
                    self._db.execute("ROLLBACK")
                    return False
                self.put_member(owner)
                self._db.execute("COMMIT")
                return True
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()


class MemoryStore:
    """A Store that keeps nothing: for unit tests and benchmarks of the rules."""

    cluster = False

    def __init__(self) -> None:
        self.writes = 0

    def load(self) -> Snapshot:
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

    def set_presence(self, key: str, endpoints: list[str], nat: dict[str, Any]) -> None:
        pass

    def clear_presence(self, key: str) -> None:
        pass

    async def claim_node(self, n: NodeRecord) -> NodeRecord | None:
        self.writes += 1
        return n

    async def add_member(self, m: MemberRecord, limit: int) -> bool:
        self.writes += 1
        return True

    async def create_network(self, net: NetworkRecord, owner: MemberRecord) -> bool:
        self.writes += 2
        return True

    async def aclose(self) -> None:
        pass

    def close(self) -> None:
        pass


def nat_json(nat: dict[str, Any]) -> str:
    return json.dumps(nat, separators=(",", ":"), sort_keys=True)
