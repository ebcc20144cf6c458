"""The coordination server process: asyncio shell around ``Coordinator``.

One task per control connection: Noise XX handshake (``control.channel``),
then a hello, then requests and heartbeats. A connection that breaks the
protocol (garbage, oversized or invalid messages) is closed and counted; it
never affects other sessions. A node that misses heartbeats for
``HEARTBEAT_TIMEOUT`` is logged out. A second login with the same key replaces
the first connection (the node restarted).

Password hashing runs in a bounded, per-source-fair pool of worker threads
(``hash_pool``), so a slow KDF never stalls the loop and a flood of guesses
cannot starve honest joins.

Abuse bounds (``[limits]`` in server.toml, see ``rate_limits``): concurrent
connections in total, per source address and in the handshake; logins and new
registrations per source; wrong passwords per (source, network) and per
network, each refused with "try again in N s". ``registration`` decides who may
register a new key: anyone (``open``), holders of a pre-auth key (``key``),
nobody (``closed``). Repeated errors are logged once per interval with a count.

State: ``open_store`` (SQLite by default, PostgreSQL for a cluster). Decisions
other servers could race are taken by the store before the coordinator
applies them (a first login's address, a seat in a network, a network name).
With PostgreSQL, ``ClusterSync`` keeps this server's cache in step with the
others. A database that cannot be reached refuses what needs it (new nodes,
membership changes) with one clear error; connected nodes and their tunnels
are left alone.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shoal.config import ServerConfig, parse_endpoint
from shoal.conn_limits import (
    ConnectionLimits,
    HandshakeSlots,
    descriptor_budget,
    raise_nofile_limit,
)
from shoal.control import messages as m
from shoal.control.channel import Channel, ChannelError
from shoal.identity import StaticKeypair, encode_key
from shoal.log_throttle import LogThrottle, install_loop_handler
from shoal.memory import PeakWatch, give_back
from shoal.server import auth_keys, discovery
from shoal.server.auth_key_store import auth_key_store
from shoal.server.auth_keys import AuthKeyRecord
from shoal.server.coordinator import Coordinator, Outbox, PoolExhausted, RequestError
from shoal.server.hash_pool import FairHashPool
from shoal.server.metrics import ServerTimings, TimedStore
from shoal.server.passwords import hash_password, verify_password
from shoal.server.rate_limits import RateLimited, ServerLimits
from shoal.server.store import (
    SqliteStore,
    Store,
    StoreUnavailable,
    is_postgres,
    open_store,
    sqlite_path,
)
from shoal.server.web import start_web

log = logging.getLogger(__name__)

CLAIM_ATTEMPTS = 64      # addresses tried for a first login when other servers race for them
HANDSHAKE_TIMEOUT = 10.0
HEARTBEAT_TIMEOUT = 15.0
SEND_QUEUE_MAX = 1024  # messages queued for one slow node before it is disconnected
STALE_CODES = ("no_such_network", "not_member", "not_owner")


@dataclass
class ServerCounters:
    connections: int = 0
    refused_connections: int = 0
    rate_limited: int = 0
    logins: int = 0
    bad_handshakes: int = 0
    bad_messages: int = 0
    timeouts: int = 0
    slow_consumers: int = 0


@dataclass
class Session:
    key: str
    channel: Channel
    writer: asyncio.StreamWriter
    peer_addr: str
    queue: asyncio.Queue[bytes] = field(default_factory=lambda: asyncio.Queue(SEND_QUEUE_MAX))
    closed: bool = False
    # the node's latest path to each peer (public key -> report), for the admin page
    paths: dict[str, m.PathReport] = field(default_factory=dict)
    granted: frozenset[str] = frozenset()   # networks named in the node's relay grants
    granted_at: float = 0.0                 # monotonic

    def push(self, msg: m.Msg) -> bool:
        try:
            self.queue.put_nowait(m.encode(msg))
            return True
        except asyncio.QueueFull:
            return False


class Server:
    def __init__(self, cfg: ServerConfig, keypair: StaticKeypair, store: Store | None = None,
                 services: list[Any] | None = None) -> None:
        self.cfg = cfg
        self.keypair = keypair
        self.server_id = secrets.token_hex(6)
        self.timings = ServerTimings()
        self.cluster: Any = None
        self.coord: Coordinator = None  # type: ignore[assignment]
        self.store: Store = None  # type: ignore[assignment]
        self.auth_keys: Any = None
        if not is_postgres(cfg.database):
            db = sqlite_path(cfg.database, cfg.state_dir)
            for suffix in ("", "-wal", "-shm"):   # older servers left these 0644
                f = Path(db + suffix)
                if f.is_file() and f.stat().st_mode & 0o077:
                    f.chmod(0o600)
        if store is None and not is_postgres(cfg.database):
            store = SqliteStore(sqlite_path(cfg.database, cfg.state_dir))
        if store is not None:   # PostgreSQL is opened (asynchronously) by open()
            self._use(store)
        self.sessions: dict[str, Session] = {}
        self.counters = ServerCounters()
        self.services = services or []
        # callables (key, active networks) -> RelayGrant, added by relay plugins
        # (shoal_server_register_services through add_relay_granter); revokers end a
        # node's registration at a relay running in this process (logout, eviction).
        self.relay_granters: list[Callable[[str, list[str]], m.RelayGrant]] = []
        self.relay_revokers: list[Callable[[str], None]] = []
        self.relay_grant_lifetime = 600
        self._published: dict[str, object] = {}
        # Prometheus collectors added by plugins (shoal_metrics_register_collectors)
        self.collectors: list[Any] = []
        self.stopping = False
        lim = cfg.limits
        self.limits = ServerLimits.from_config(lim)
        self.conns = ConnectionLimits(lim.connections or 1, lim.connections_per_source)
        self.hash_pool = FairHashPool(lim.hash_workers, lim.hash_queue_per_source,
                                      lim.hash_queue)
        self.throttle = LogThrottle(log)
        self.handshakes = HandshakeSlots(lim.handshakes, lim.handshakes_per_source)
        self._conn_peak = PeakWatch()
        self._tcp: asyncio.base_events.Server | None = None
        self._discovery: list[asyncio.DatagramTransport] = []
        self.ready = asyncio.Event()

    # ------------------------------------------------------------ lifecycle
    def _use(self, store: Store) -> None:
        self.store = TimedStore(store, self.timings.store)  # type: ignore[assignment]
        self.coord = Coordinator(self.store, self.cfg.address_pool)
        self.auth_keys = auth_key_store(self.store)

    async def open(self) -> None:
        """Open (and migrate) a PostgreSQL store, load the state, start cluster sync."""
        if self.coord is None:
            self._use(await open_store(self.cfg.database, self.cfg.state_dir, self.server_id,
                                       self.cfg.listen))
        if self.store.cluster and self.cluster is None:
            from shoal.server.cluster import ClusterSync

            self.cluster = ClusterSync(self, self.store)  # type: ignore[arg-type]
            await self.cluster.start()

    async def run(self, stop: asyncio.Event) -> None:
        await self.open()
        host, port = parse_endpoint(self.cfg.listen)
        install_loop_handler(asyncio.get_running_loop(), log)
        raise_nofile_limit()
        # Half the descriptors for control connections; a relay in this process takes
        # at most a quarter, and the rest is left for the database and the like.
        self.conns.max_total = self.cfg.limits.connections or min(100_000,
                                                                  descriptor_budget(0.5))
        # A large backlog: after a server restart every node reconnects at once.
        self._tcp = await asyncio.start_server(self._accept, host, port, limit=1 << 16,
                                               reuse_address=True, backlog=4096)
        self._discovery = await discovery.serve(self.cfg.discovery)
        tasks = [asyncio.create_task(start()) for start in self.services]
        web = await start_web(self)   # [metrics] and [admin] endpoints, when configured
        tasks.append(asyncio.create_task(self._refresh_grants()))
        tasks.append(asyncio.create_task(self._housekeeping()))
        # Long-lived state (nodes, networks, members) need not be scanned by the
        # cyclic GC again and again; collections stay short as the state grows.
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 20)
        log.info("coordination server listening on %s (key %s), discovery on %s",
                 self.cfg.listen, self.keypair.public_b64, ", ".join(self.cfg.discovery) or "-")
        self.ready.set()
        try:
            await stop.wait()
        finally:
            # Shutting down: record every session's end without telling the
            # others (they are going away too), then close the store last.
            self.stopping = True
            for t in tasks:
                t.cancel()
            for endpoint in web:
                await endpoint.close()
            self._tcp.close()
            for sess in list(self.sessions.values()):
                self._drop(sess)
            for t in self._discovery:
                t.close()
            if self.cluster is not None:
                self.cluster.stop()
            self.hash_pool.close()
            await self.store.aclose()

    async def _housekeeping(self) -> None:
        """Forget rate-limit entries that have run out, and give memory back to the
        system once a flood of connections is over."""
        while True:
            await asyncio.sleep(10)
            self.limits.sweep(time.monotonic())
            if self._conn_peak.fallen(self.conns.total):
                give_back()

    # ------------------------------------------------------------ delivery
    def deliver(self, outbox: Outbox) -> None:
        for key, msg in outbox:
            s = self.sessions.get(key)
            if s is not None and not s.closed and not s.push(msg):
                self.counters.slow_consumers += 1
                log.warning("node %s is not reading its messages; disconnecting it", key)
                self._drop(s)
            elif s is not None and isinstance(msg, m.Networks):
                self._regrant(s)

    def _regrant(self, s: Session, force: bool = False) -> None:
        """Push fresh relay grants when the node's networks changed (or ``force``:
        the old ones are half-way to expiry). A node that lost a network loses its
        registration at the in-process relay at once; other relays see its old
        grant lapse."""
        if not self.relay_granters or s.closed:
            return
        nets = self.coord.active_networks(s.key)
        if not force and frozenset(nets) == s.granted:
            return
        if s.granted - frozenset(nets):
            for revoke in self.relay_revokers:
                revoke(s.key)
        s.granted, s.granted_at = frozenset(nets), time.monotonic()
        s.push(m.Grants(relays=[grant(s.key, nets) for grant in self.relay_granters]))

    async def _refresh_grants(self) -> None:
        period = max(1.0, self.relay_grant_lifetime / 8)
        while True:
            await asyncio.sleep(period)
            due = time.monotonic() - self.relay_grant_lifetime / 2
            for s in list(self.sessions.values()):
                if s.granted_at < due:
                    self._regrant(s, force=True)

    def _drop(self, s: Session) -> None:
        if s.closed:
            return
        s.closed = True
        s.writer.close()
        if self.sessions.get(s.key) is s:
            del self.sessions[s.key]
            t0 = time.perf_counter()
            out = self.coord.logout(s.key, notify=not self.stopping)
            if not self.stopping:
                # On shutdown presence is left to the lease: the nodes move to
                # another server meanwhile and their peers never see them leave.
                try:
                    self.store.clear_presence(s.key)
                except StoreUnavailable:
                    pass
                for revoke in self.relay_revokers:
                    revoke(s.key)
                self.deliver(out)
                self.timings.presence("logout", t0, len(out))

    def moved_away(self, key: str) -> None:
        """``key`` is now connected to another server: close what lingers of it here."""
        s = self.sessions.pop(key, None)
        if s is None:
            return
        s.closed = True
        s.writer.close()
        self.coord.logout(key, notify=False)

    def _announce(self, key: str) -> None:
        on = self.coord.online.get(key)
        if on is not None:
            try:
                self.store.set_presence(key, on.endpoints, on.nat.model_dump())
            except StoreUnavailable:
                pass

    async def _claim_node(self, key: str, name: str) -> None:
        """A first login: an address no other key has, decided by the database."""
        c = self.coord
        if key in c.nodes:
            return
        for attempt in range(CLAIM_ATTEMPTS):
            rec = c.new_node(key, name)
            stored = await self.store.claim_node(rec)
            if stored is not None:
                c.known_node(stored)
                if stored.virtual_ip != rec.virtual_ip:
                    c.address_taken(rec.virtual_ip)   # not used after all, but harmless
                return
            if attempt == 2 and hasattr(self.store, "used_addresses"):
                for ip in await self.store.used_addresses():
                    c.address_taken(ip)
        raise PoolExhausted("no free address could be claimed; try again")

    # ------------------------------------------------------------ connections
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counters.connections += 1
        peer = writer.get_extra_info("peername")
        peer_ip = peer[0] if peer else "?"
        if not self.conns.try_open(peer_ip):
            self.counters.refused_connections += 1
            self.throttle.log(logging.WARNING, "control cap",
                              "refusing control connections (%d open, %d in the handshake; "
                              "at most %d, %d per source)", self.conns.total,
                              self.handshakes.total, self.conns.max_total,
                              self.conns.max_per_source)
            writer.transport.abort()
            return
        self._conn_peak.see(self.conns.total)
        try:
            await self._serve(reader, writer, peer_ip)
        finally:
            self.conns.close(peer_ip)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     peer_ip: str) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        session: Session | None = None
        try:
            # A full table of unfinished handshakes sheds its oldest (a flood's
            # stale connections), so this one still gets its chance.
            shed_before = self.handshakes.shed
            slot = self.handshakes.enter(peer_ip, writer.transport.abort)
            if self.handshakes.shed != shed_before:
                self.throttle.log(logging.WARNING, "handshake shed",
                                  "control port: %d connections in the handshake (at most %d, "
                                  "%d per source); closing the oldest",
                                  self.handshakes.total, self.handshakes.max_total,
                                  self.handshakes.max_per_source)
            try:
                ch, hello, pending = await asyncio.wait_for(self._handshake(reader, writer),
                                                            HANDSHAKE_TIMEOUT)
            finally:
                self.handshakes.leave(slot)
            assert ch.remote_static is not None
            key = encode_key(ch.remote_static)
            session = Session(key, ch, writer, peer_ip)
            refusal, auth = await self._admit(key, hello, peer_ip)
            if refusal is not None:
                self.counters.rate_limited += refusal.code == "rate_limited"
                session.push(refusal)
                await self._flush_once(session)
                session = None
                return
            old = self.sessions.get(key)
            if old is not None:  # the node reconnected: the new connection wins
                old.closed = True
                old.writer.close()
            self.sessions[key] = session
            t0 = time.perf_counter()
            try:
                await self._claim_node(key, hello.name)
                if self.sessions.get(key) is not session:
                    return   # replaced by a newer connection meanwhile
                welcome, out = self.coord.login(key, hello, peer_ip)
            except (PoolExhausted, StoreUnavailable) as e:
                code = "pool_exhausted" if isinstance(e, PoolExhausted) else "unavailable"
                session.push(m.ErrorMsg(code=code, error=str(e)))
                await self._flush_once(session)
                return
            self._announce(key)
            self.counters.logins += 1
            session.granted = frozenset(self.coord.active_networks(key))
            session.granted_at = time.monotonic()
            welcome = welcome.model_copy(update={"discovery": list(self.cfg.discovery),
                                                 "relays": self.relay_grants(key)})
            session.push(welcome)
            self.deliver(out)
            self.timings.presence("login", t0, len(out))
            if auth is not None and auth.network is not None:
                await self._join_by_key(key, auth)
            sender = asyncio.create_task(self._sender(session))
            try:
                for raw in pending:
                    await self._handle(session, raw)
                await self._reader(session, reader)
            finally:
                sender.cancel()
        except (asyncio.TimeoutError, TimeoutError):
            self.counters.timeouts += 1
        except ChannelError as e:
            self.counters.bad_handshakes += 1 if session is None else 0
            self.counters.bad_messages += 0 if session is None else 1
            log.debug("control connection from %s closed: %s", peer_ip, e)
        except m.BadMessage as e:
            self.counters.bad_messages += 1
            log.debug("control connection from %s sent a bad message: %s", peer_ip, e)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except OSError as e:
            self.throttle.log(logging.WARNING, f"control {type(e).__name__}",
                              "control connection from %s: %s", peer_ip, e)
        finally:
            if session is not None:
                self._drop(session)
            else:
                writer.close()

    async def _admit(self, key: str, hello: m.Hello, source: str
                     ) -> tuple[m.ErrorMsg | None, AuthKeyRecord | None]:
        """May this key log in from this source now? (refusal to send or None, the
        pre-auth key it registered with, if any)."""
        now = time.monotonic()
        try:
            self.limits.logins.check_and_hit(source, now, f"too many logins from {source}")
            if key in self.coord.nodes:
                return None, None
            mode = self.cfg.registration
            if mode == "closed":
                return m.ErrorMsg(code="registration_closed",
                                  error="this server does not register new nodes "
                                        "(registration = \"closed\"); ask its operator"), None
            if mode == "key" and not hello.auth_key:
                return m.ErrorMsg(code="auth_key_required",
                                  error="this server registers new nodes only with a "
                                        "pre-auth key; set auth_key or auth_key_file "
                                        "under [server] in the node's config"), None
            self.limits.registrations.check_and_hit(
                source, now, f"too many new nodes registered from {source}")
        except RateLimited as e:
            return m.ErrorMsg(code="rate_limited", error=str(e), retry_after=e.retry_after), None
        if not hello.auth_key:
            return None, None
        refusal, record = await self._use_auth_key(hello.auth_key)
        if refusal is not None and mode == "open":
            log.info("node %s from %s: %s; registering it without", key, source, refusal)
            return None, None
        if refusal is not None:
            return m.ErrorMsg(code="auth_key_refused", error=refusal), None
        log.info("node %s from %s registers with pre-auth key %s", key, source,
                 record.id if record else "?")
        return None, record

    async def _use_auth_key(self, text: str) -> tuple[str | None, AuthKeyRecord | None]:
        parsed = auth_keys.parse(text)
        if parsed is None:
            return "the pre-auth key is malformed (it starts with 'shoal-key-')", None
        kid, secret = parsed
        keys = self.auth_keys
        record = await _maybe_await(keys.get(kid))
        why = auth_keys.check(record, secret, time.time())
        if why is None and not await _maybe_await(keys.use(kid)):
            why = "the pre-auth key was used up meanwhile; ask the operator for a new one"
        return why, record if why is None else None

    async def _join_by_key(self, key: str, record: AuthKeyRecord) -> None:
        """A pre-auth key that names a network puts its node in it (no password)."""
        assert record.network is not None
        try:
            rec = self.coord.join_check(key, record.network, True)
            if rec is None:
                return
            await self._seat(rec, self.coord.network(record.network).member_limit)
        except (RequestError, StoreUnavailable) as e:
            log.warning("pre-auth key %s: cannot join %s: %s", record.id, record.network, e)
            return
        self.deliver(self.coord.admit(rec))

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                         ) -> tuple[Channel, m.Hello, list[bytes]]:
        ch: Channel | None = None
        while True:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("closed during handshake")
            if ch is None:   # made only once the peer says something (a flood's don't)
                ch = Channel(self.keypair, initiator=False)
            msgs = ch.receive_data(data)
            out = ch.data_to_send()
            if out:
                writer.write(out)
                await writer.drain()
            if msgs:
                first = m.decode_to_server(msgs[0])
                if not isinstance(first, m.Hello):
                    raise m.BadMessage("first message must be hello")
                return ch, first, msgs[1:]

    async def _reader(self, s: Session, reader: asyncio.StreamReader) -> None:
        while not s.closed:
            data = await asyncio.wait_for(reader.read(65536), HEARTBEAT_TIMEOUT)
            if not data:
                return
            for raw in s.channel.receive_data(data):
                await self._handle(s, raw)

    async def _sender(self, s: Session) -> None:
        try:
            while not s.closed:
                data = await s.queue.get()
                s.channel.send_message(data)
                while not s.queue.empty():  # batch what is already queued into one write
                    s.channel.send_message(s.queue.get_nowait())
                s.writer.write(s.channel.data_to_send())
                await s.writer.drain()
        except (ConnectionError, ChannelError):
            self._drop(s)

    async def _flush_once(self, s: Session) -> None:
        while not s.queue.empty():
            s.channel.send_message(s.queue.get_nowait())
        s.writer.write(s.channel.data_to_send())
        await s.writer.drain()

    # ------------------------------------------------------------ messages
    async def _handle(self, s: Session, raw: bytes) -> None:
        msg = m.decode_to_server(raw)
        match msg:
            case m.Heartbeat():
                s.push(m.Heartbeat())
                if msg.paths is not None:
                    s.paths = {p.public_key: p for p in msg.paths}
            case m.Bye():
                self._drop(s)
            case m.Request():
                s.push(await self._request(s.key, msg, s.peer_addr))
            case m.Report():
                t0 = time.perf_counter()
                out = self.coord.report(s.key, msg)
                self.deliver(out)
                self.timings.presence("report", t0, len(out))
                self._announce(s.key)
            case m.SignalTo():
                self.deliver(self.coord.signal(s.key, msg))
            case m.Hello():
                raise m.BadMessage("hello sent twice")

    async def operate(self, key: str, op: str, args: dict[str, Any]) -> Any:
        """Run a network operation with ``key``'s authority, exactly as a request from that
        node would run (the admin page acts as a network's owner). Raises RequestError."""
        res = await self._request(key, m.Request(id=0, op=op, args=args))  # type: ignore[arg-type]
        if not res.ok:
            raise RequestError(res.code or "invalid", res.error or "the server refused that")
        return res.data

    async def _request(self, key: str, req: m.Request, source: str = "admin"
                       ) -> m.Result:
        try:
            args = m.parse_args(req.op, req.args)
            try:
                data, out = await self._dispatch(key, source, req.op, args)
            except RequestError as e:
                # Another server may have made the change this one has not heard of yet
                # (a network just created, a member just joined): read it and try again.
                name = getattr(args, "name", None)
                if self.cluster is None or name is None or e.code not in STALE_CODES:
                    raise
                await self.cluster.refresh_network(name)
                data, out = await self._dispatch(key, source, req.op, args)
        except RequestError as e:
            return m.Result(id=req.id, ok=False, code=e.code, error=str(e))
        except StoreUnavailable as e:
            return m.Result(id=req.id, ok=False, code="unavailable",
                            error=f"the server's database is unavailable right now ({e}); "
                                  "try again")
        except RateLimited as e:
            self.counters.rate_limited += 1
            return m.Result(id=req.id, ok=False, code="rate_limited", error=str(e),
                            data={"retry_after": e.retry_after})
        except m.BadMessage as e:
            return m.Result(id=req.id, ok=False, code="invalid", error=str(e))
        self.deliver(out)
        return m.Result(id=req.id, ok=True, data=data)

    async def _dispatch(self, key: str, source: str, op: str, a: m.Args
                        ) -> tuple[Any, Outbox]:
        c = self.coord
        pool = self.hash_pool
        match op, a:
            case "create", m.CreateArgs():
                if a.name in c.networks:  # fail fast, before paying for the KDF
                    raise RequestError("exists", f"a network named {a.name!r} already exists")
                h = await pool.run(source, hash_password, a.password)
                net, owner = c.create_check(key, a, h)
                if not await self.store.create_network(net, owner):
                    raise RequestError("exists", f"a network named {a.name!r} already exists")
                return {"status": "active"}, c.adopt(net, owner)
            case "join", m.JoinArgs():
                net = c.network(a.name)
                mem = c.members[a.name].get(key)
                if mem is not None and mem.status == "active":
                    return {"status": "active"}, []
                self.limits.check_password(source, a.name, time.monotonic())
                ok = await pool.run(source, verify_password, a.password, net.password_hash)
                self.limits.password_result(source, a.name, ok, time.monotonic())
                rec = c.join_check(key, a.name, ok)
                if rec is None:
                    status = c.members[a.name][key].status
                    out = []
                else:
                    status = rec.status
                    await self._seat(rec, net.member_limit)
                    out = c.admit(rec)
                if status == "pending":  # recorded; the owner is told, the joiner must wait
                    self.deliver(out)
                    raise RequestError("needs_approval", f"network {a.name!r} needs the owner's "
                                                         "approval; the request is recorded")
                return {"status": status}, out
            case "leave", m.NetworkArgs():
                return None, c.leave(key, a.name)
            case "list", _:
                return [x.model_dump() for x in c.summaries(key, with_online=True)], []
            case "members", m.NetworkArgs():
                return c.member_list(key, a.name), []
            case "approve", m.MemberArgs():
                return None, await self.approve(key, a.name, a.member)
            case "evict", m.MemberArgs():
                return None, c.evict(key, a.name, a.member)
            case "set", m.SetArgs():
                c.owned(key, a.name)
                h = None
                if a.password is not None:
                    h = await pool.run(source, hash_password, a.password)
                return None, c.set(key, a, h)
            case "delete", m.NetworkArgs():
                return None, c.delete(key, a.name)
            case "route_add", m.RouteArgs():
                info, out = c.route_add(key, a)
                return info.model_dump(), out
            case "route_approve", m.RouteArgs():
                info, out = c.route_approve(key, a)
                return info.model_dump(), out
            case "route_remove", m.RouteArgs():
                return None, c.route_remove(key, a)
            case "routes", m.NetworkArgs():
                return [r.model_dump() for r in c.route_list(key, a.name)], []
        raise RequestError("invalid", f"unknown operation {op!r}")

    async def approve(self, key: str, network: str, who: str) -> Outbox:
        """``key`` (the owner) approves a pending member: the seat is taken in the store."""
        c = self.coord
        rec = c.approve_check(key, network, who)
        if rec is None:
            return []
        try:
            await self._seat(rec, c.network(network).member_limit)
        except StoreUnavailable:
            raise RequestError("unavailable", "the server cannot reach its database right "
                                              "now; try again") from None
        return c.admit(rec)

    async def _seat(self, rec: Any, limit: int) -> None:
        """Write a member row; the database refuses it when the network is full."""
        if not await self.store.add_member(rec, limit):
            if self.cluster is not None:   # our view was stale: reload the network
                await self.cluster.refresh_network(rec.network)
            self.coord.network(rec.network)   # deleted meanwhile: say that, not "full"
            raise self.coord.full(rec.network)

    # ------------------------------------------------------------ plugin handle (ServerHandle)
    def add_relay_granter(self, granter: Callable[..., m.RelayGrant]) -> None:
        if len(inspect.signature(granter).parameters) < 2:   # contract 1.2 and before: key only
            one = granter
            granter = lambda key, networks: one(key)  # noqa: E731
        self.relay_granters.append(granter)

    def add_relay_revoker(self, revoker: Callable[[str], None]) -> None:
        self.relay_revokers.append(revoker)

    def set_relay_grant_lifetime(self, seconds: int) -> None:
        self.relay_grant_lifetime = seconds

    def publish(self, name: str, obj: object) -> None:
        self._published[name] = obj

    def published(self, name: str) -> object | None:
        return self._published.get(name)

    def relay_grants(self, key: str) -> list[m.RelayGrant]:
        """Relays this node may use: one grant per relay announced by plugins."""
        nets = self.coord.active_networks(key)
        return [grant(key, nets) for grant in self.relay_granters]

    def status(self) -> dict[str, Any]:
        out = {"online": len(self.sessions), "nodes": len(self.coord.nodes),
               "networks": len(self.coord.networks), "counters": self.counters.__dict__,
               "time": time.time(), "server_id": self.server_id}
        if self.cluster is not None:
            store: Any = self.store
            out["cluster"] = {"online_elsewhere": len(self.coord.online) - len(self.sessions),
                              "resyncs": self.cluster.resyncs, "applied": self.cluster.applied,
                              "database": "reachable" if store.available else "unreachable",
                              "write_backlog": store.backlog}
        return out



async def _maybe_await(value: Any) -> Any:
    """A store answer: a value (SQLite) or an awaitable (PostgreSQL)."""
    return await value if inspect.isawaitable(value) else value
