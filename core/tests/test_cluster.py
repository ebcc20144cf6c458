"""Several coordination servers on one PostgreSQL, in one process, over loopback.

Real ``Server`` objects and real ``ControlClient``s (Noise over TCP); each
test gets a fresh database on the module's throwaway PostgreSQL.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from shoal.config import ServerConfig
from shoal.control import messages as m
from shoal.control.client import ControlClient
from shoal.errors import ShoalError
from shoal.identity import StaticKeypair
from shoal.server.app import Server

PASSWORD = "pw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    def __init__(self, url: str, tmp: Any, n: int = 2) -> None:
        self.url = url
        self.tmp = tmp
        self.key = StaticKeypair.generate()   # one server key shared by the cluster
        self.servers: list[Server] = []
        self.stops: list[asyncio.Event] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.n = n

    async def start_server(self, i: int) -> Server:
        cfg = ServerConfig(state_dir=str(self.tmp / f"s{i}"), listen=f"127.0.0.1:{free_port()}",
                           database=self.url)
        srv = Server(cfg, self.key)
        stop = asyncio.Event()
        task = asyncio.create_task(srv.run(stop))
        await asyncio.wait_for(srv.ready.wait(), 20)
        self.servers.append(srv)
        self.stops.append(stop)
        self.tasks.append(task)
        return srv

    async def __aenter__(self) -> Cluster:
        for i in range(self.n):
            await self.start_server(i)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for s in self.stops:
            s.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)


class Client:
    def __init__(self, name: str, server: Server | list[tuple[str, bytes]]) -> None:
        self.kp = StaticKeypair.generate()
        self.name = name
        self.peers: dict[str, m.PeerInfo] = {}
        self.downs: list[str] = []
        self.welcome: m.Welcome | None = None
        servers = server if isinstance(server, list) else [(server.cfg.listen,
                                                             server.keypair.public)]
        self.ctl = ControlClient(self.kp, name, servers, None,
                                 lambda: ["127.0.0.1:9"], lambda: 9, self._welcome, self._peers)
        self.task = asyncio.create_task(self.ctl.run())

    def _welcome(self, w: m.Welcome) -> None:
        self.welcome = w

    def _peers(self, msg: m.Peers) -> None:
        if msg.full:
            self.peers = {}
        for p in msg.up:
            self.peers[p.name] = p
        for k in msg.down:
            self.downs.append(k)
            for name, p in list(self.peers.items()):
                if p.public_key == k:
                    del self.peers[name]

    async def online(self) -> None:
        await until(lambda: self.ctl.state.online, f"{self.name} online")

    async def close(self) -> None:
        await self.ctl.bye()
        self.task.cancel()


async def until(cond: Callable[[], Any], what: str, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def run(coro: Awaitable[None]) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_membership_and_presence_cross_servers(pg_url: str, tmp_path: Any) -> None:
    async def main() -> None:
        async with Cluster(pg_url, tmp_path) as cl:
            a, b = cl.servers
            alice, bob = Client("alice", a), Client("bob", b)
            await alice.online()
            await bob.online()
            assert alice.welcome and bob.welcome
            assert alice.welcome.virtual_ip != bob.welcome.virtual_ip
            await alice.ctl.request("create", {"name": "lan", "password": PASSWORD})
            await bob.ctl.request("join", {"name": "lan", "password": PASSWORD})
            await until(lambda: "bob" in alice.peers and "alice" in bob.peers, "peers up")
            assert bob.peers["alice"].virtual_ip == alice.welcome.virtual_ip
            # candidates reported at B reach A's node
            bob.ctl.report(m.Report(endpoints=["127.0.0.1:4242"]))
            await until(lambda: alice.peers["bob"].endpoints == ["127.0.0.1:4242"],
                        "candidates across servers")
            # a node leaving at B goes offline at A's node
            await bob.close()
            await until(lambda: "bob" not in alice.peers, "bob offline at alice")
            members = await alice.ctl.request("members", {"name": "lan"})
            assert {x["name"]: x["online"] for x in members} == {"alice": True, "bob": False}
            # the same key at the other server gets its address back
            carol = Client("bob", a)
            carol.kp = bob.kp
            carol.ctl.keypair = bob.kp
            await carol.online()
            assert carol.welcome and carol.welcome.virtual_ip == bob.welcome.virtual_ip
            await alice.close()
            await carol.close()
    run(main())


def test_concurrent_first_logins_unique_addresses_and_member_limit(pg_url: str,
                                                                  tmp_path: Any) -> None:
    """Many first logins at once over both servers: no duplicate address, limit held."""
    limit, joiners = 12, 30

    async def main() -> None:
        async with Cluster(pg_url, tmp_path) as cl:
            owner = Client("owner", cl.servers[0])
            await owner.online()
            await owner.ctl.request("create", {"name": "lan", "password": PASSWORD,
                                               "member_limit": limit})
            clients = [Client(f"n{i}", cl.servers[i % 2]) for i in range(joiners)]
            await asyncio.gather(*(c.online() for c in clients))

            async def join(c: Client) -> bool:
                try:
                    await c.ctl.request("join", {"name": "lan", "password": PASSWORD})
                    return True
                except ShoalError as e:
                    assert "full" in str(e)
                    return False
            results = await asyncio.gather(*(join(c) for c in clients))
            assert sum(results) == limit - 1
            ips = [c.welcome.virtual_ip for c in [owner, *clients] if c.welcome]
            assert len(ips) == joiners + 1 and len(set(ips)) == len(ips)
            assert all(ipaddress.IPv4Address(ip) in ipaddress.IPv4Network("100.64.0.0/10")
                       for ip in ips)
            for srv in cl.servers:   # both caches agree with the database
                await until(lambda srv=srv: sum(1 for x in srv.coord.members["lan"].values()
                                                if x.status == "active") == limit,
                            "member counts converge")
            joined = {c.kp.public_b64 for c, ok in zip(clients, results) if ok}
            joined.add(owner.kp.public_b64)
            assert all(set(srv.coord.members["lan"]) == joined for srv in cl.servers)
            # and every member is told about every other, whichever server it is on
            members = [c for c in [owner, *clients] if c.kp.public_b64 in joined]
            await until(lambda: all(len(c.peers) == limit - 1 for c in members),
                        "every member sees every other")
            for c in [owner, *clients]:
                await c.close()
    run(main())


def test_database_outage_leaves_nodes_alone_and_recovers(pg_cluster: Any, pg_url: str,
                                                         tmp_path: Any,
                                                         caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    """The database goes away: one line says so, connected nodes keep their peers;
    it comes back: the servers catch up and take changes again."""
    async def main() -> None:
        async with Cluster(pg_url, tmp_path) as cl:
            a, b = cl.servers
            alice, bob = Client("alice", a), Client("bob", b)
            await alice.online()
            await bob.online()
            await alice.ctl.request("create", {"name": "lan", "password": PASSWORD})
            await bob.ctl.request("join", {"name": "lan", "password": PASSWORD})
            await until(lambda: "bob" in alice.peers and "alice" in bob.peers, "peers up")
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, pg_cluster.pause)
            try:
                # a write while the database is away: queued, and said once
                bob.ctl.report(m.Report(endpoints=["127.0.0.1:5555"]))
                await until(lambda: "database unreachable" in caplog.text, "one line")
                await asyncio.sleep(3)
                assert alice.ctl.state.online and bob.ctl.state.online
                assert "bob" in alice.peers and "alice" in bob.peers
                with pytest.raises(ShoalError, match="database"):
                    await alice.ctl.request("create", {"name": "other", "password": PASSWORD})
            finally:
                await loop.run_in_executor(None, pg_cluster.resume)
            await until(lambda: alice.peers["bob"].endpoints == ["127.0.0.1:5555"],
                        "the queued change reaches the other server", timeout=30)
            await alice.ctl.request("create", {"name": "other", "password": PASSWORD})
            await bob.ctl.request("join", {"name": "other", "password": PASSWORD})
            lines = [r.getMessage() for r in caplog.records
                     if "database unreachable" in r.getMessage()]
            assert len({id(a.store), id(b.store)}) == 2 and 1 <= len(lines) <= 2, lines
            assert all("\n" not in x for x in lines)
            await alice.close()
            await bob.close()
    run(main())


def test_node_fails_over_and_its_peers_never_see_it_leave(pg_url: str, tmp_path: Any) -> None:
    async def main() -> None:
        async with Cluster(pg_url, tmp_path) as cl:
            a, b = cl.servers
            key = cl.key.public
            dead = f"127.0.0.1:{free_port()}"
            # the first address refuses: the node moves on at once, without backing off
            alice = Client("alice", [(dead, key), (a.cfg.listen, key), (b.cfg.listen, key)])
            bob = Client("bob", b)
            await until(lambda: alice.ctl.state.online, "alice online", timeout=3)
            assert alice.ctl.server == a.cfg.listen
            await bob.online()
            await alice.ctl.request("create", {"name": "lan", "password": PASSWORD})
            await bob.ctl.request("join", {"name": "lan", "password": PASSWORD})
            await until(lambda: "bob" in alice.peers and "alice" in bob.peers, "peers up")
            address = alice.welcome.virtual_ip if alice.welcome else None
            logins = alice.ctl.state.logins
            cl.stops[0].set()             # server A goes away
            await cl.tasks[0]
            await until(lambda: alice.ctl.state.logins > logins and alice.ctl.state.online,
                        "alice logged in again", timeout=10)
            assert alice.ctl.server == b.cfg.listen
            assert alice.welcome and alice.welcome.virtual_ip == address
            assert "bob" in alice.peers and "alice" in bob.peers
            assert alice.kp.public_b64 not in bob.downs
            await alice.close()
            await bob.close()
    run(main())


def test_dead_servers_nodes_go_offline_elsewhere_within_the_lease(pg_url: str,
                                                                  tmp_path: Any) -> None:
    """A server stops renewing its lease (dead) and its node cannot move: the node's
    peers on the other server are told it is offline within 15 s."""
    async def main() -> None:
        async with Cluster(pg_url, tmp_path) as cl:
            a, b = cl.servers
            alice, bob = Client("alice", a), Client("bob", b)   # alice knows only A
            await alice.online()
            await bob.online()
            await alice.ctl.request("create", {"name": "lan", "password": PASSWORD})
            await bob.ctl.request("join", {"name": "lan", "password": PASSWORD})
            await until(lambda: "alice" in bob.peers, "peers up")
            loop = asyncio.get_running_loop()
            cl.stops[0].set()
            await cl.tasks[0]
            t0 = loop.time()
            await until(lambda: "alice" not in bob.peers, "alice offline at bob", timeout=15)
            assert loop.time() - t0 > 1.0   # by the lease, not by a goodbye
            await alice.close()
            await bob.close()
    run(main())
