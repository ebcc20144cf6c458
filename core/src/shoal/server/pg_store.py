"""PostgreSQL store: several coordination servers share one state.

Rules it obeys (ARCHITECTURE §3):

* The tables are the truth. A server's memory is a cache of them, refreshed
  from ``NOTIFY shoal`` payloads that carry only ids (``SERVER KIND ID``:
  ``n NETWORK`` a network or its members changed, ``p KEY`` a node's presence
  changed). A listener that (re)connects reloads everything.
* Plain writes (``put_*``/``delete_*``, presence) are queued in order and
  written by one writer task, a batch per transaction, with their
  notifications in the same transaction (delivered on commit). Nothing is
  written or notified per heartbeat.
* Decisions that other servers could race are taken in the database:
  ``claim_node`` inserts under the unique address constraint (the caller
  retries with another address), ``add_member`` counts active members under a
  row lock on the network, ``create_network`` relies on the primary key.
* A node's presence row belongs to the server it is connected to; that server
  renews a lease (``servers.lease_until``, database clock). Any server sweeps
  expired leases and deletes their presence, so a dead server's nodes go
  offline everywhere within ``LEASE_TTL + SWEEP_INTERVAL`` (12 s).
* When the database is unreachable, queued writes wait (bounded) and are
  retried; the server says so once in one line and once again when it is back.

asyncpg is the driver: maintained, with a connection pool and LISTEN support.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from shoal.server.migrations import MIGRATIONS
from shoal.server.store import (
    MemberRecord,
    NetworkRecord,
    NodeRecord,
    PresenceRecord,
    RouteRecord,
    Snapshot,
    StoreUnavailable,
    nat_json,
)

log = logging.getLogger(__name__)

CHANNEL = "shoal"
LEASE_TTL = 10.0         # seconds a server's presence rows outlive its last renewal
LEASE_RENEW = 2.0        # renewed 5 times per lease: a busy server does not lose it
SWEEP_INTERVAL = 2.0     # offline bound for a dead server's nodes: TTL + sweep = 12 s
WRITE_QUEUE_MAX = 200_000
WRITE_BATCH = 2000
CONNECT_TIMEOUT = 5.0
ACQUIRE_TIMEOUT = 10.0   # waiting for a pooled connection under load is not an outage
COMMAND_TIMEOUT = 15.0   # a query that hangs this long is (network partition, dead host)
POOL_SIZE = 8
MIGRATION_LOCK = 7400_0001   # pg_advisory_xact_lock key: one migrator at a time

Job = tuple[str, tuple[Any, ...], str | None]   # sql, args, notification payload

_DOWN_ERRORS = (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
                asyncpg.exceptions.OperatorInterventionError,       # shutting down, starting
                asyncpg.exceptions.InsufficientResourcesError,      # too many connections
                asyncio.TimeoutError, TimeoutError)

NODE_COLS = "public_key, name, virtual_ip, created, last_seen"
NET_COLS = "name, password_hash, owner, join_mode, member_limit, type, created"
MEMBER_COLS = "network, public_key, status, hub, joined, lan_route"
ROUTE_COLS = "network, prefix, gateway, approved, masquerade, created"


def _node(r: Any) -> NodeRecord:
    return NodeRecord(r[0], r[1], r[2], r[3], r[4])


def _net(r: Any) -> NetworkRecord:
    return NetworkRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6])


def _member(r: Any) -> MemberRecord:
    return MemberRecord(r[0], r[1], r[2], bool(r[3]), r[4], r[5])


def _route(r: Any) -> RouteRecord:
    return RouteRecord(r[0], r[1], r[2], bool(r[3]), bool(r[4]), r[5])


def _presence(r: Any) -> PresenceRecord:
    return PresenceRecord(r[0], r[1], json.loads(r[2]), json.loads(r[3]))


async def migrate(conn: asyncpg.Connection) -> list[int]:
    """Apply pending migrations (serialised between servers by an advisory lock)."""
    done = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        current = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        for mig in MIGRATIONS:
            if mig.version <= current:
                continue
            for stmt in mig.statements("postgres"):
                await conn.execute(stmt)
            await conn.execute("INSERT INTO schema_version VALUES ($1)", mig.version)
            done.append(mig.version)
    return done


def redact(url: str) -> str:
    """The URL without its password (for messages: secrets are never logged)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


async def connect(url: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(url, timeout=CONNECT_TIMEOUT)
    except _DOWN_ERRORS as e:
        raise StoreUnavailable(f"cannot reach the database {redact(url)}: {_why(e)} "
                               "(is PostgreSQL running, and is 'database' right?)") from None
    except asyncpg.PostgresError as e:
        raise StoreUnavailable(f"the database {redact(url)} refused the connection: {e}") \
            from None


def _why(e: BaseException) -> str:
    return str(e) or type(e).__name__


class PostgresStore:
    cluster = True

    def __init__(self, url: str, server_id: str, listen: str) -> None:
        self.url = url
        self.server_id = server_id
        self.listen = listen
        self.pool: asyncpg.Pool | None = None
        self._snapshot: Snapshot = ([], [], [])
        self._routes: list[RouteRecord] = []
        self._jobs: deque[Job] = deque()
        self._wake = asyncio.Event()
        self._queued = 0      # jobs ever queued
        self._written = 0     # jobs ever written (or dropped as refused)
        self._progress = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._lease_conn: asyncpg.Connection | None = None
        self._lease_lock = asyncio.Lock()
        self.available = True
        # Per "n NETWORK" / "p KEY": how many of this server's own changes were started.
        # A reader that saw the count move while it read knows its rows may predate them.
        # (One entry per network and node this server changed: bounded by the state.)
        self.touched: dict[str, int] = {}
        self.writes = 0
        self.notifications_sent = 0

    @classmethod
    async def open(cls, url: str, server_id: str = "", listen: str = "") -> PostgresStore:
        self = cls(url, server_id, listen)
        conn = await connect(url)
        try:
            await migrate(conn)
            self._snapshot = await self._load(conn)
            self._routes = await self._load_routes(conn)
        finally:
            await conn.close()
        try:
            self.pool = await asyncpg.create_pool(url, min_size=1, max_size=POOL_SIZE,
                                                  timeout=CONNECT_TIMEOUT,
                                                  command_timeout=COMMAND_TIMEOUT)
        except _DOWN_ERRORS as e:
            raise StoreUnavailable(f"cannot reach the database {redact(url)}: {_why(e)}") \
                from None
        self._writer = asyncio.create_task(self._write_loop())
        return self

    # ------------------------------------------------------------ reads
    @staticmethod
    async def _load(conn: asyncpg.Connection) -> Snapshot:
        nodes = [_node(r) for r in await conn.fetch(f"SELECT {NODE_COLS} FROM nodes")]
        nets = [_net(r) for r in await conn.fetch(f"SELECT {NET_COLS} FROM networks")]
        members = [_member(r) for r in await conn.fetch(f"SELECT {MEMBER_COLS} FROM members")]
        return nodes, nets, members

    @staticmethod
    async def _load_routes(conn: asyncpg.Connection, names: list[str] | None = None
                           ) -> list[RouteRecord]:
        if names is None:
            return [_route(r) for r in await conn.fetch(f"SELECT {ROUTE_COLS} FROM routes")]
        return [_route(r) for r in await conn.fetch(
            f"SELECT {ROUTE_COLS} FROM routes WHERE network = ANY($1)", names)]

    def load_routes(self) -> list[RouteRecord]:
        routes, self._routes = self._routes, []
        return routes

    def load(self) -> Snapshot:
        """The state read when the store was opened (the coordinator's first cache)."""
        snap, self._snapshot = self._snapshot, ([], [], [])
        return snap

    async def _fetch(self, fn: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
        assert self.pool is not None
        try:
            conn = await self.pool.acquire(timeout=ACQUIRE_TIMEOUT)
        except (asyncio.TimeoutError, TimeoutError):
            raise StoreUnavailable("the database is busy") from None
        except _DOWN_ERRORS as e:
            self._down(e)
            raise StoreUnavailable(f"cannot reach the database: {_why(e)}") from None
        try:
            result = await fn(conn)
        except _DOWN_ERRORS as e:
            self._down(e)
            raise StoreUnavailable(f"cannot reach the database: {_why(e)}") from None
        except asyncpg.PostgresError as e:
            # Not expected (the schema is ours): refuse this one operation, in one line.
            log.error("database refused an operation: %s", e)
            raise StoreUnavailable(f"the database refused the operation: {e}") from None
        finally:
            await self.pool.release(conn)
        self._up()
        return result

    async def load_all(self) -> tuple[Snapshot, list[RouteRecord], list[PresenceRecord]]:
        async def go(conn: asyncpg.Connection) -> Any:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                snap = await self._load(conn)
                routes = await self._load_routes(conn)
                pres = [_presence(r) for r in await conn.fetch(
                    "SELECT public_key, server_id, endpoints, nat FROM presence")]
            return snap, routes, pres
        result: Any = await self._fetch(go)
        return result  # type: ignore[no-any-return]

    async def load_networks(self, names: list[str]) -> tuple[
            list[NetworkRecord], list[MemberRecord], list[NodeRecord], list[RouteRecord]]:
        """Network rows, all their members, the nodes those members are, their routes."""
        async def go(conn: asyncpg.Connection) -> Any:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                nets = [_net(r) for r in await conn.fetch(
                    f"SELECT {NET_COLS} FROM networks WHERE name = ANY($1)", names)]
                mems = [_member(r) for r in await conn.fetch(
                    f"SELECT {MEMBER_COLS} FROM members WHERE network = ANY($1)", names)]
                nodes = [_node(r) for r in await conn.fetch(
                    f"SELECT {NODE_COLS} FROM nodes WHERE public_key IN "
                    "(SELECT public_key FROM members WHERE network = ANY($1))", names)]
                routes = await self._load_routes(conn, names)
            return nets, mems, nodes, routes
        result: Any = await self._fetch(go)
        return result  # type: ignore[no-any-return]

    async def load_presence(self, keys: list[str]) -> tuple[list[PresenceRecord], list[NodeRecord]]:
        async def go(conn: asyncpg.Connection) -> Any:
            pres = [_presence(r) for r in await conn.fetch(
                "SELECT public_key, server_id, endpoints, nat FROM presence "
                "WHERE public_key = ANY($1)", keys)]
            nodes = [_node(r) for r in await conn.fetch(
                f"SELECT {NODE_COLS} FROM nodes WHERE public_key = ANY($1)", keys)]
            return pres, nodes
        result: Any = await self._fetch(go)
        return result  # type: ignore[no-any-return]

    # ------------------------------------------------------------ queued writes
    def _touch(self, kind: str, ident: str) -> None:
        k = f"{kind} {ident}"
        self.touched[k] = self.touched.get(k, 0) + 1

    def _queue(self, sql: str, args: tuple[Any, ...], notify: str | None) -> None:
        if len(self._jobs) >= WRITE_QUEUE_MAX:
            raise StoreUnavailable("the database is unreachable and the write queue is full")
        if notify is not None:
            _, kind, ident = notify.split(" ", 2)
            self._touch(kind, ident)
        self._jobs.append((sql, args, notify))
        self._queued += 1
        self._wake.set()

    def _note(self, kind: str, ident: str) -> str:
        return f"{self.server_id} {kind} {ident}"

    @property
    def backlog(self) -> int:
        return len(self._jobs)

    def put_node(self, n: NodeRecord) -> None:
        self._queue(f"INSERT INTO nodes ({NODE_COLS}) VALUES ($1,$2,$3,$4,$5) "
                    "ON CONFLICT (public_key) DO UPDATE SET name=EXCLUDED.name, "
                    "last_seen=EXCLUDED.last_seen",
                    (n.public_key, n.name, n.virtual_ip, n.created, n.last_seen), None)

    def put_network(self, n: NetworkRecord) -> None:
        self._queue(f"INSERT INTO networks ({NET_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7) "
                    "ON CONFLICT (name) DO UPDATE SET password_hash=EXCLUDED.password_hash, "
                    "owner=EXCLUDED.owner, join_mode=EXCLUDED.join_mode, "
                    "member_limit=EXCLUDED.member_limit, type=EXCLUDED.type",
                    (n.name, n.password_hash, n.owner, n.join_mode, n.member_limit, n.type,
                     n.created), self._note("n", n.name))

    def delete_network(self, name: str) -> None:
        self._queue("DELETE FROM networks WHERE name=$1", (name,), self._note("n", name))

    def put_member(self, m: MemberRecord) -> None:
        self._queue(f"INSERT INTO members ({MEMBER_COLS}) VALUES ($1,$2,$3,$4,$5,$6) "
                    "ON CONFLICT (network, public_key) DO UPDATE SET status=EXCLUDED.status, "
                    "hub=EXCLUDED.hub, lan_route=EXCLUDED.lan_route",
                    (m.network, m.public_key, m.status, int(m.hub), m.joined, m.lan_route),
                    self._note("n", m.network))

    def delete_member(self, network: str, public_key: str) -> None:
        self._queue("DELETE FROM members WHERE network=$1 AND public_key=$2",
                    (network, public_key), self._note("n", network))

    def put_route(self, r: RouteRecord) -> None:
        self._queue(f"INSERT INTO routes ({ROUTE_COLS}) VALUES ($1,$2,$3,$4,$5,$6) "
                    "ON CONFLICT (network, prefix) DO UPDATE SET gateway=EXCLUDED.gateway, "
                    "approved=EXCLUDED.approved, masquerade=EXCLUDED.masquerade",
                    (r.network, r.prefix, r.gateway, int(r.approved), int(r.masquerade),
                     r.created), self._note("n", r.network))

    def delete_route(self, network: str, prefix: str) -> None:
        self._queue("DELETE FROM routes WHERE network=$1 AND prefix=$2", (network, prefix),
                    self._note("n", network))

    def set_presence(self, key: str, endpoints: list[str], nat: dict[str, Any]) -> None:
        self._queue("INSERT INTO presence (public_key, server_id, endpoints, nat, since) "
                    "VALUES ($1,$2,$3,$4,$5) ON CONFLICT (public_key) DO UPDATE SET "
                    "server_id=EXCLUDED.server_id, endpoints=EXCLUDED.endpoints, "
                    "nat=EXCLUDED.nat, since=EXCLUDED.since",
                    (key, self.server_id, json.dumps(endpoints), nat_json(nat), time.time()),
                    self._note("p", key))

    def clear_presence(self, key: str) -> None:
        self._queue("DELETE FROM presence WHERE public_key=$1 AND server_id=$2",
                    (key, self.server_id), self._note("p", key))

    async def flush(self, timeout: float = CONNECT_TIMEOUT) -> None:
        """Wait until every write queued so far is in the database (later ones may wait)."""
        target = self._queued

        async def written() -> None:
            while self._written < target:
                await self._progress.wait()
        try:
            await asyncio.wait_for(written(), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            raise StoreUnavailable("the database is not keeping up with writes") from None

    async def _write_loop(self) -> None:
        assert self.pool is not None
        delay = 0.5
        while True:
            if not self._jobs:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._jobs[i] for i in range(min(len(self._jobs), WRITE_BATCH))]
            try:
                async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
                    await self._write(conn, batch)
            except _DOWN_ERRORS as e:
                self._down(e)
                await asyncio.sleep(delay)
                delay = min(5.0, delay * 2)
                continue
            except asyncpg.PostgresError as e:
                # One bad row must not block the queue: write one by one, drop the refused.
                log.warning("database refused a batch of writes (%s); retrying one by one", e)
                try:
                    async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
                        for job in batch:
                            try:
                                await self._write(conn, [job])
                            except asyncpg.PostgresError as e1:
                                log.error("database refused a write, dropped: %s", e1)
                except _DOWN_ERRORS as e2:
                    self._down(e2)
                    await asyncio.sleep(delay)
                    continue
            delay = 0.5
            self._up()
            for _ in batch:
                self._jobs.popleft()
            self._written += len(batch)
            self._progress.set()          # wake every flush() waiting, then re-arm
            self._progress = asyncio.Event()

    async def _write(self, conn: asyncpg.Connection, batch: list[Job]) -> None:
        notes = list(dict.fromkeys(j[2] for j in batch if j[2] is not None))
        async with conn.transaction():
            # Runs of the same statement go as one pipelined executemany (a login storm
            # is thousands of presence upserts in a row); order is kept.
            i = 0
            while i < len(batch):
                j = i
                while j < len(batch) and batch[j][0] == batch[i][0]:
                    j += 1
                if j - i == 1:
                    await conn.execute(batch[i][0], *batch[i][1])
                else:
                    await conn.executemany(batch[i][0], [b[1] for b in batch[i:j]])
                i = j
            if notes:
                await conn.executemany(f"SELECT pg_notify('{CHANNEL}', $1)", [(n,) for n in notes])
        self.writes += len(batch)
        self.notifications_sent += len(notes)

    def _down(self, e: BaseException) -> None:
        if self.available:
            log.error("database unreachable (%s): connected nodes keep their tunnels; "
                      "retrying", _why(e))
        self.available = False

    def _up(self) -> None:
        if not self.available:
            log.warning("database reachable again")
        self.available = True

    # ------------------------------------------------------------ decisions in the database
    async def _atomic(self, fn: Callable[[asyncpg.Connection], Awaitable[Any]],
                      ordered: bool = True) -> Any:
        if ordered:   # after this server's own queued writes (a leave, then a join)
            await self.flush()
        return await self._fetch(fn)

    async def claim_node(self, n: NodeRecord) -> NodeRecord | None:
        async def go(conn: asyncpg.Connection) -> NodeRecord | None:
            try:
                row = await conn.fetchrow(
                    f"INSERT INTO nodes ({NODE_COLS}) VALUES ($1,$2,$3,$4,$5) "
                    f"ON CONFLICT (public_key) DO NOTHING RETURNING {NODE_COLS}",
                    n.public_key, n.name, n.virtual_ip, n.created, n.last_seen)
            except asyncpg.UniqueViolationError:
                return None   # the address is taken: the caller picks another
            if row is None:   # the key registered through another server
                row = await conn.fetchrow(f"SELECT {NODE_COLS} FROM nodes WHERE public_key=$1",
                                          n.public_key)
            return _node(row) if row is not None else None
        result: NodeRecord | None = await self._atomic(go, ordered=False)
        return result

    async def used_addresses(self) -> list[str]:
        async def go(conn: asyncpg.Connection) -> list[str]:
            return [r[0] for r in await conn.fetch("SELECT virtual_ip FROM nodes")]
        result: list[str] = await self._fetch(go)
        return result

    async def add_member(self, m: MemberRecord, limit: int) -> bool:
        self._touch("n", m.network)
        try:
            return await self._add_member(m, limit)
        finally:
            self._touch("n", m.network)

    async def _add_member(self, m: MemberRecord, limit: int) -> bool:
        async def go(conn: asyncpg.Connection) -> bool:
            async with conn.transaction():
                exists = await conn.fetchval(
                    "SELECT member_limit FROM networks WHERE name=$1 FOR UPDATE", m.network)
                if exists is None:
                    return False
                if m.status == "active":
                    count = await conn.fetchval(
                        "SELECT COUNT(*) FROM members WHERE network=$1 AND status='active' "
                        "AND public_key<>$2", m.network, m.public_key)
                    if count >= min(limit, exists):
                        return False
                await conn.execute(
                    f"INSERT INTO members ({MEMBER_COLS}) VALUES ($1,$2,$3,$4,$5,$6) "
                    "ON CONFLICT (network, public_key) DO UPDATE SET status=EXCLUDED.status",
                    m.network, m.public_key, m.status, int(m.hub), m.joined, m.lan_route)
                await conn.execute(f"SELECT pg_notify('{CHANNEL}', $1)",
                                   self._note("n", m.network))
            return True
        result: bool = await self._atomic(go)
        return result

    async def create_network(self, net: NetworkRecord, owner: MemberRecord) -> bool:
        self._touch("n", net.name)
        try:
            return await self._create_network(net, owner)
        finally:
            self._touch("n", net.name)

    async def _create_network(self, net: NetworkRecord, owner: MemberRecord) -> bool:
        async def go(conn: asyncpg.Connection) -> bool:
            async with conn.transaction():
                row = await conn.fetchrow(
                    f"INSERT INTO networks ({NET_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7) "
                    "ON CONFLICT (name) DO NOTHING RETURNING name",
                    net.name, net.password_hash, net.owner, net.join_mode, net.member_limit,
                    net.type, net.created)
                if row is None:
                    return False
                await conn.execute(
                    f"INSERT INTO members ({MEMBER_COLS}) VALUES ($1,$2,$3,$4,$5,$6)",
                    owner.network, owner.public_key, owner.status, int(owner.hub),
                    owner.joined, owner.lan_route)
                await conn.execute(f"SELECT pg_notify('{CHANNEL}', $1)",
                                   self._note("n", net.name))
            return True
        result: bool = await self._atomic(go)
        return result

    # ------------------------------------------------------------ leases
    async def _on_lease_conn(self, fn: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
        """Leases use a connection of their own: a busy pool must never let them lapse."""
        async with self._lease_lock:   # one operation at a time on that connection
            return await self._lease_op(fn)

    async def _lease_op(self, fn: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
        conn = self._lease_conn
        try:
            if conn is None or conn.is_closed():
                conn = self._lease_conn = await asyncpg.connect(
                    self.url, timeout=CONNECT_TIMEOUT, command_timeout=COMMAND_TIMEOUT)
            result = await fn(conn)
        except _DOWN_ERRORS as e:
            self._down(e)
            if conn is not None:
                conn.terminate()
            self._lease_conn = None
            raise StoreUnavailable(f"cannot reach the database: {_why(e)}") from None
        except asyncpg.PostgresError as e:
            log.error("database refused a lease operation: %s", e)
            raise StoreUnavailable(f"the database refused the operation: {e}") from None
        self._up()
        return result

    async def renew_lease(self) -> bool:
        """Extend this server's lease; False if it had expired (its presence was swept)."""
        async def go(conn: asyncpg.Connection) -> bool:
            status = await conn.execute(
                "UPDATE servers SET lease_until = EXTRACT(EPOCH FROM clock_timestamp()) + $2 "
                "WHERE id=$1", self.server_id, LEASE_TTL)
            if status.endswith(" 1"):
                return True
            await conn.execute(
                "INSERT INTO servers (id, listen, started, lease_until) VALUES "
                "($1, $2, $3, EXTRACT(EPOCH FROM clock_timestamp()) + $4) "
                "ON CONFLICT (id) DO UPDATE SET lease_until=EXCLUDED.lease_until",
                self.server_id, self.listen, time.time(), LEASE_TTL)
            return False
        result: bool = await self._on_lease_conn(go)
        return result

    async def sweep(self) -> list[str]:
        """Delete servers whose lease ran out and their nodes' presence; returns those keys."""
        async def go(conn: asyncpg.Connection) -> list[str]:
            async with conn.transaction():
                await conn.execute(
                    "DELETE FROM servers WHERE lease_until < EXTRACT(EPOCH FROM clock_timestamp())")
                rows = await conn.fetch(
                    "DELETE FROM presence WHERE server_id NOT IN (SELECT id FROM servers) "
                    "RETURNING public_key")
                keys = [r[0] for r in rows]
                if keys:
                    await conn.executemany(f"SELECT pg_notify('{CHANNEL}', $1)",
                                           [(self._note("p", k),) for k in keys])
            return keys
        result: list[str] = await self._on_lease_conn(go)
        return result

    # ------------------------------------------------------------ lifecycle
    async def aclose(self) -> None:
        try:
            await self.flush(timeout=2.0)
        except StoreUnavailable:
            log.warning("%d writes were not saved: the database is unreachable", len(self._jobs))
        if self._writer is not None:
            self._writer.cancel()
        if self._lease_conn is not None:
            self._lease_conn.terminate()
        if self.pool is not None:
            try:
                await asyncio.wait_for(self.pool.close(), 2.0)
            except (asyncio.TimeoutError, TimeoutError):
                self.pool.terminate()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
        if self._lease_conn is not None:
            self._lease_conn.terminate()
        if self.pool is not None:
            self.pool.terminate()


class Listener:
    """LISTEN on a dedicated connection; reconnects, and asks for a full resync each time.

    ``on_note(server_id, kind, ident)`` gets each notification; ``on_connect()``
    runs after every (re)connection, before notifications are processed again,
    so nothing that changed while the listener was away is missed.
    """

    def __init__(self, url: str, on_note: Callable[[str, str, str], None],
                 on_connect: Callable[[], Awaitable[None]]) -> None:
        self.url = url
        self.on_note = on_note
        self.on_connect = on_connect
        self.connected = asyncio.Event()
        self.received = 0

    def _callback(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        parts = payload.split(" ", 2)
        if len(parts) == 3:
            self.received += 1
            self.on_note(*parts)

    async def run(self) -> None:
        delay = 0.5
        while True:
            conn = None
            try:
                conn = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda c: lost.set())
                await conn.add_listener(CHANNEL, self._callback)
                await self.on_connect()
                self.connected.set()
                delay = 0.5
                while not lost.is_set():   # a silent network loss shows up here
                    try:
                        await asyncio.wait_for(lost.wait(), SWEEP_INTERVAL)
                    except (asyncio.TimeoutError, TimeoutError):
                        await conn.fetchval("SELECT 1", timeout=CONNECT_TIMEOUT)
            except (*_DOWN_ERRORS, asyncpg.PostgresError, StoreUnavailable) as e:
                log.debug("listener: %s", _why(e))
            finally:
                self.connected.clear()
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(delay)
            delay = min(5.0, delay * 2)
