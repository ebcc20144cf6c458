"""Keeps one server's cache in step with the others sharing its PostgreSQL.

The asyncio shell between ``pg_store`` (leases, LISTEN/NOTIFY, reads) and the
``Coordinator`` (rules, outboxes):

* notifications name what changed (a network, a node's presence); they are
  collected for ``BATCH_DELAY`` and the rows are read in one query per kind,
  then applied, so a login storm on one server costs the others a few queries,
  not one per node;
* on every (re)connection of the listener: renew the lease, write again the
  presence of every node connected here (a long outage may have swept it),
  then reload everything and tell local nodes only what differs;
* every ``LEASE_RENEW`` the lease is renewed, every ``SWEEP_INTERVAL`` expired
  leases are swept (their nodes go offline here and, by notification,
  everywhere);
* a node whose presence now belongs to another server has moved: its
  connection here (if one lingers) is closed without telling its peers it left.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import asyncpg

from shoal.control import messages as m
from shoal.server.pg_store import LEASE_RENEW, SWEEP_INTERVAL, Listener, PostgresStore
from shoal.server.store import StoreUnavailable

if TYPE_CHECKING:
    from shoal.server.app import Server

log = logging.getLogger(__name__)

BATCH_DELAY = 0.02
RETRY_DELAY = 1.0
FIRST_SYNC_TIMEOUT = 10.0


class ClusterSync:
    def __init__(self, server: Server, store: PostgresStore) -> None:
        self.server = server
        self.store = store
        self.listener = Listener(store.url, self._note, self._connected)
        self._nets: set[str] = set()
        self._keys: set[str] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.resyncs = 0
        self.applied = 0

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self.listener.run()),
                       asyncio.create_task(self._apply_loop()),
                       asyncio.create_task(self._lease_loop())]
        try:
            await asyncio.wait_for(self.listener.connected.wait(), FIRST_SYNC_TIMEOUT)
        except (asyncio.TimeoutError, TimeoutError):
            log.warning("cluster: no listener connection yet; serving from the loaded state")

    def stop(self) -> None:
        for t in self._tasks:
            t.cancel()

    async def refresh_network(self, name: str) -> None:
        """Reload one network now (our cached view of it turned out stale)."""
        try:
            await self._apply([name], [])
        except StoreUnavailable:
            pass

    # ------------------------------------------------------------ notifications
    def _note(self, server_id: str, kind: str, ident: str) -> None:
        if server_id == self.store.server_id:
            return   # our own change: already applied here
        if kind == "n":
            self._nets.add(ident)
        elif kind == "p":
            self._keys.add(ident)
        else:
            return
        self._wake.set()

    async def _apply_loop(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(BATCH_DELAY)
            self._wake.clear()
            nets, keys = self._nets, self._keys
            self._nets, self._keys = set(), set()
            try:
                await self._apply(sorted(nets), sorted(keys))
            except StoreUnavailable:
                # Read again later (a reconnecting listener also reloads everything).
                self._nets |= nets
                self._keys |= keys
                self._wake.set()
                await asyncio.sleep(RETRY_DELAY)
            except asyncpg.PostgresError as e:
                log.error("cluster: reading changes failed (%s); they are read again at the "
                          "next full reload", e)

    async def _apply(self, nets: list[str], keys: list[str]) -> None:
        coord, srv = self.server.coord, self.server
        if nets:
            # Rows read while this server changes the same network may predate that
            # change: write ours first, and read again if one started meanwhile.
            touched = self.store.touched
            before = {name: touched.get(f"n {name}", 0) for name in nets}
            await self.store.flush()
            rows, members, nodes, routes = await self.store.load_networks(nets)
            by_name = {n.name: n for n in rows}
            for name in nets:
                if touched.get(f"n {name}", 0) != before[name]:
                    self._nets.add(name)
                    self._wake.set()
                    continue
                mems = [x for x in members if x.network == name]
                srv.deliver(coord.apply_network(name, by_name.get(name), mems, nodes,
                                                [r for r in routes if r.network == name]))
                self.applied += 1
        if keys:
            touched = self.store.touched
            before = {key: touched.get(f"p {key}", 0) for key in keys}
            await self.store.flush()
            pres, nodes = await self.store.load_presence(keys)
            for n in nodes:
                coord.known_node(n)
            found = {p.public_key: p for p in pres}
            for key in keys:
                if touched.get(f"p {key}", 0) != before[key]:
                    # the node just logged in or out here: our own write decides
                    self._keys.add(key)
                    self._wake.set()
                    continue
                p = found.get(key)
                if p is None:
                    srv.deliver(coord.remote_offline(key))
                elif p.server_id != self.store.server_id:
                    srv.moved_away(key)
                    srv.deliver(coord.remote_online(key, p.endpoints,
                                                    m.NatInfo.model_validate(p.nat)))
                self.applied += 1

    async def _connected(self) -> None:
        """The listener is (again) connected: resynchronise everything."""
        await self.store.renew_lease()
        self._announce_local()
        self._nets.clear()
        self._keys.clear()
        touched = dict(self.store.touched)
        await self.store.flush()
        snap, routes, pres = await self.store.load_all()
        remote = {}
        for p in pres:
            if p.server_id == self.store.server_id:
                continue
            self.server.moved_away(p.public_key)
            remote[p.public_key] = (p.endpoints, m.NatInfo.model_validate(p.nat))
        self.server.deliver(self.server.coord.resync(*snap, remote, routes))
        stale = [k for k, count in self.store.touched.items() if touched.get(k) != count]
        if stale:   # changed here while the snapshot was read: read those again
            self._nets |= {k[2:] for k in stale if k.startswith("n ")}
            self._keys |= {k[2:] for k in stale if k.startswith("p ")}
            self._wake.set()
        self.resyncs += 1
        log.info("cluster: state loaded (%d nodes, %d networks, %d online elsewhere)",
                 len(snap[0]), len(snap[1]), len(remote))

    def _announce_local(self) -> None:
        coord = self.server.coord
        for key in coord.local_keys():
            on = coord.online[key]
            self.store.set_presence(key, on.endpoints, on.nat.model_dump())

    # ------------------------------------------------------------ leases
    async def _lease_loop(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            ticks += 1
            try:
                if ticks * SWEEP_INTERVAL >= LEASE_RENEW:
                    ticks = 0
                    if not await self.store.renew_lease():
                        log.warning("cluster: this server's lease had expired; "
                                    "announcing its nodes again")
                        self._announce_local()
                for key in await self.store.sweep():
                    self.server.deliver(self.server.coord.remote_offline(key))
            except StoreUnavailable:
                pass
            except asyncpg.PostgresError as e:
                log.error("cluster: lease renewal or sweep failed: %s", e)
