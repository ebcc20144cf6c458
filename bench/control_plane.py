#!/usr/bin/env python3
"""Load benchmark of the coordination server (control plane), over loopback.

Starts a real server (``shoal server run -c server.toml`` in a subprocess, state
in a temporary directory, listening on 127.0.0.1:<free port>) and N simulated
nodes driven from a few client processes. Each node has its own X25519 key,
speaks the real protocol over real TCP (Noise XX via the sans-IO
``shoal.control.channel.Channel``, then hello / welcome / requests / peers),
and sends heartbeats like a real node. Phases:

1. login: every node connects and logs in (TCP connect -> Welcome), at most
   ``--login-concurrency`` handshakes in flight over all clients;
2. networks: nodes are split into groups of ``--network-size``; the first node
   of each group creates a network (op "create"), then every other node joins
   its group's network (op "join"), at most ``--join-concurrency`` requests in
   flight. Each create/join pays one scrypt hash on the server (worker threads);
3. presence: ``--events`` times, one member goes offline (its TCP connection is
   closed) and later comes back (new connection, same key). For each event we
   time, for every other online member of its network, the moment its "peers"
   message (down or up) arrives. All processes read CLOCK_MONOTONIC, which is
   system-wide on Linux, so times compare across processes.

The server's RSS (/proc/PID/status VmRSS) is read before the logins, after them
and after the joins; its CPU time (/proc/PID/stat) is read around each phase.

Cluster mode (``--servers N``, N > 1, or ``--postgres``): a throwaway
PostgreSQL (``shoal.testing.postgres``, Unix socket) and N servers on it with
one shared key; node ``i`` logs in to server ``i mod N`` (so every network
spans every server). Figures are given for the whole and per server, and
presence latency is split into members on the same server as the node that
came or went and members on another server (cross-server: LISTEN/NOTIFY, then
a read of the changed rows). The database's CPU time is reported too.

    .venv/bin/python bench/control_plane.py [--nodes 1000[,2000,...]]
        [--network-size 256] [--clients 2] [--login-concurrency 64]
        [--join-concurrency 16] [--events 20] [--json PATH]
        [--server-profile PATH] [--keep] [--servers N] [--postgres]

Exit status: 0 when every run completed, 1 when a run failed (a login, request
or event timed out, or the server died), 2 when it cannot run here. Ctrl-C or
SIGTERM ends the server and client processes (by PID) and removes the
temporary directory (unless ``--keep``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import platform
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from shoal.control import messages as m
from shoal.control.channel import Channel, ChannelError, State
from shoal.identity import StaticKeypair, decode_public_key

HOST = "127.0.0.1"
UDP_PORT = 41641
HEARTBEAT_EVERY = 5.0          # like shoal.control.client; the server drops a node after 15 s
LOGIN_TIMEOUT = 60.0
REQUEST_TIMEOUT = 120.0
EVENT_TIMEOUT = 30.0
PROGRESS_EVERY = 20.0         # seconds between progress lines during long phases
EVENT_GAP = 0.2                # pause between presence events so they never overlap
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# The server process: raise RLIMIT_NOFILE, die with the benchmark (PR_SET_PDEATHSIG),
# then exec the real command line.
SERVER_WRAPPER = r"""
import ctypes, os, resource, signal, sys
want, ppid = int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
try:
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(want, hard)))
except (ValueError, OSError):
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(want, soft), hard), hard))
ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
if os.getppid() != ppid:
    sys.exit(1)
os.execv(sys.argv[3], sys.argv[3:])
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Failed(Exception):
    """This run cannot go on (timeouts, refused requests, the server died)."""


def raise_nofile(want: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def sys_busy() -> tuple[float, float]:
    """(busy, total) CPU-seconds over all CPUs since boot, from /proc/stat."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = f
    busy = user + nice + system + irq + softirq + steal
    return busy / CLK_TCK, (busy + idle + iowait) / CLK_TCK


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    s = sorted(values)
    return s[max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))]


def ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 1)


# ================================================================== client processes
class SimNode(asyncio.Protocol):
    """One simulated node: a control connection driven by the sans-IO channel."""

    def __init__(self, client: Client, nid: int, kp: StaticKeypair, name: str = "") -> None:
        self.client = client
        self.nid = nid
        self.kp = kp
        self.name = name or f"bench-{nid:05d}"
        self.hello = m.encode(m.Hello(name=self.name, udp_port=UDP_PORT))
        self.transport: asyncio.Transport | None = None
        self.ch: Channel | None = None
        self.welcome: asyncio.Future[float] | None = None
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.next_id = 1
        self.hello_sent = False
        self.online = False
        self.last_tx = 0.0

    # ------------------------------------------------------------ connection
    def reset(self) -> None:
        self.ch = Channel(self.kp, initiator=True, expected_remote=self.client.server_pub)
        self.welcome = asyncio.get_running_loop().create_future()
        self.hello_sent = False
        self.online = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport) and self.ch is not None
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.write(self.ch.data_to_send())

    def data_received(self, data: bytes) -> None:
        t = time.monotonic()
        ch = self.ch
        assert ch is not None and self.transport is not None
        try:
            msgs = ch.receive_data(data)
            out = ch.data_to_send()
            if not self.hello_sent and ch.state is State.OPEN:
                ch.send_message(self.hello)
                out += ch.data_to_send()
                self.hello_sent = True
        except ChannelError as e:
            self._fail(f"channel: {e}")
            return
        if out:
            self.transport.write(out)
            self.last_tx = t
        for raw in msgs:
            self._handle(json.loads(raw), t)

    def _handle(self, obj: dict[str, Any], t: float) -> None:
        c = self.client
        typ = obj.get("type")
        c.received[typ] = c.received.get(typ, 0) + 1
        if typ == "peers":
            if c.recording and not obj.get("full"):
                for key in obj.get("down", ()):
                    c.receipts[("down", key)].append((self.nid, t))
                for p in obj.get("up", ()):
                    c.receipts[("up", p["public_key"])].append((self.nid, t))
        elif typ == "result":
            fut = self.pending.pop(obj.get("id", -1), None)
            if fut is not None and not fut.done():
                fut.set_result(obj)
        elif typ == "welcome":
            self.online = True
            if self.welcome is not None and not self.welcome.done():
                self.welcome.set_result(t)
        elif typ == "error":
            self._fail(f"server error: {obj.get('code')}: {obj.get('error')}")

    def _fail(self, why: str) -> None:
        self.client.errors.append(f"node {self.nid}: {why}")
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.online = False
        self.transport = None
        err = ConnectionError(f"node {self.nid}: connection lost ({exc or 'closed'})")
        if self.welcome is not None and not self.welcome.done():
            self.welcome.set_exception(err)
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(err)
        self.pending.clear()

    # ------------------------------------------------------------ actions
    def send(self, payload: bytes) -> None:
        assert self.ch is not None and self.transport is not None
        self.ch.send_message(payload)
        self.transport.write(self.ch.data_to_send())
        self.last_tx = time.monotonic()

    async def login(self) -> tuple[float, float]:
        self.reset()
        assert self.welcome is not None
        loop = asyncio.get_running_loop()
        t0 = time.monotonic()
        port = self.client.ports[self.nid % len(self.client.ports)]
        await asyncio.wait_for(loop.create_connection(lambda: self, HOST, port),
                               LOGIN_TIMEOUT)
        t1 = await asyncio.wait_for(asyncio.shield(self.welcome), LOGIN_TIMEOUT)
        return t0, t1

    async def request(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        rid = self.next_id
        self.next_id += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[rid] = fut
        self.send(m.encode(m.Request(id=rid, op=op, args=args)))  # type: ignore[arg-type]
        try:
            return await asyncio.wait_for(fut, REQUEST_TIMEOUT)
        finally:
            self.pending.pop(rid, None)

    def disconnect(self) -> float:
        t = time.monotonic()
        if self.transport is not None:
            self.transport.close()
        self.online = False
        return t


class Client:
    """One client process: a share of the simulated nodes, driven by the orchestrator."""

    def __init__(self, conn: mpc.Connection, ports: list[int], server_pub: bytes,
                 node_ids: list[int]) -> None:
        self.conn = conn
        self.ports = ports
        self.server_pub = server_pub
        self.nodes = {nid: SimNode(self, nid, StaticKeypair.generate()) for nid in node_ids}
        self.errors: list[str] = []
        self.received: dict[str, int] = {}
        self.recording = False
        self.receipts: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()

    def _readable(self) -> None:
        try:
            while self.conn.poll():
                self.inbox.put_nowait(self.conn.recv())
        except (EOFError, OSError):  # the orchestrator is gone
            self.inbox.put_nowait({"cmd": "quit"})
            asyncio.get_running_loop().remove_reader(self.conn.fileno())

    async def _heartbeats(self) -> None:
        hb = m.encode(m.Heartbeat())
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            for node in self.nodes.values():
                if node.online and node.transport is not None and \
                        now - node.last_tx > HEARTBEAT_EVERY:
                    try:
                        node.send(hb)
                    except ChannelError:
                        pass

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.conn.fileno(), self._readable)
        hb = asyncio.create_task(self._heartbeats())
        self.conn.send({n.nid: n.kp.public_b64 for n in self.nodes.values()})
        try:
            while True:
                cmd = await self.inbox.get()
                if cmd["cmd"] == "quit":
                    return
                reply = await getattr(self, "cmd_" + cmd["cmd"])(**cmd.get("args", {}))
                self.conn.send(reply)
        finally:
            hb.cancel()
            for node in self.nodes.values():
                if node.transport is not None:
                    node.transport.abort()

    def _cpu(self) -> float:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return ru.ru_utime + ru.ru_stime

    # ------------------------------------------------------------ commands
    async def cmd_login(self, concurrency: int) -> dict[str, Any]:
        sem = asyncio.Semaphore(concurrency)
        cpu0 = self._cpu()

        async def one(node: SimNode) -> tuple[int, float, float] | str:
            async with sem:
                try:
                    t0, t1 = await node.login()
                    return node.nid, t0, t1
                except (OSError, TimeoutError) as e:
                    return f"node {node.nid}: login failed: {type(e).__name__}: {e}"

        res = await asyncio.gather(*(one(n) for n in self.nodes.values()))
        return {"times": [r for r in res if not isinstance(r, str)],
                "errors": [r for r in res if isinstance(r, str)] + self._take_errors(),
                "cpu": self._cpu() - cpu0}

    async def cmd_requests(self, items: list[tuple[int, str, dict[str, Any]]],
                           concurrency: int) -> dict[str, Any]:
        sem = asyncio.Semaphore(concurrency)
        cpu0 = self._cpu()

        async def one(nid: int, op: str, args: dict[str, Any]) -> tuple[int, float, float] | str:
            async with sem:
                t0 = time.monotonic()
                try:
                    res = await self.nodes[nid].request(op, args)
                except (OSError, TimeoutError, ChannelError, AssertionError) as e:
                    return f"node {nid}: {op} failed: {type(e).__name__}: {e}"
                if not res.get("ok"):
                    return f"node {nid}: {op} refused: {res.get('code')}: {res.get('error')}"
                return nid, t0, time.monotonic()

        async def progress() -> None:
            while True:
                await asyncio.sleep(PROGRESS_EVERY)
                self.conn.send({"progress": done})

        done = 0
        reporter = asyncio.create_task(progress())

        async def counted(it: tuple[int, str, dict[str, Any]]) -> tuple[int, float, float] | str:
            nonlocal done
            r = await one(*it)
            done += 1
            return r

        try:
            res = await asyncio.gather(*(counted(it) for it in items))
        finally:
            reporter.cancel()
        return {"times": [r for r in res if not isinstance(r, str)],
                "errors": [r for r in res if isinstance(r, str)] + self._take_errors(),
                "cpu": self._cpu() - cpu0}

    async def cmd_warmup(self, count: int) -> dict[str, Any]:
        """Temporary nodes that each create and delete a network at the same time, so every
        KDF worker thread of the server has run scrypt once before the baseline RSS."""
        nodes = [SimNode(self, -1 - i, StaticKeypair.generate(), f"warmup-{i:03d}")
                 for i in range(count)]
        errors: list[str] = []

        async def one(node: SimNode) -> None:
            name = f"warmup-{-node.nid:03d}"
            try:
                await node.login()
                for op, args in (("create", {"name": name, "password": "warm-up"}),
                                 ("delete", {"name": name})):
                    res = await node.request(op, args)
                    if not res.get("ok"):
                        errors.append(f"warm-up {op}: {res.get('code')}: {res.get('error')}")
            except (OSError, TimeoutError, ChannelError) as e:
                errors.append(f"warm-up: {type(e).__name__}: {e}")
            finally:
                node.disconnect()

        await asyncio.gather(*(one(n) for n in nodes))
        return {"errors": errors + self._take_errors()}

    async def cmd_record(self, on: bool) -> dict[str, Any]:
        self.recording = on
        self.receipts.clear()
        return {}

    async def cmd_disconnect(self, nid: int) -> dict[str, Any]:
        return {"t": self.nodes[nid].disconnect()}

    async def cmd_connect(self, nid: int) -> dict[str, Any]:
        try:
            t0, t1 = await self.nodes[nid].login()
        except (OSError, TimeoutError) as e:
            return {"error": f"node {nid}: login failed: {type(e).__name__}: {e}"}
        return {"t": t0, "welcome": t1}

    async def cmd_wait(self, kind: str, key: str, expect: int, timeout: float) -> dict[str, Any]:
        """Until ``expect`` of this client's nodes got the (kind, key) change, or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.receipts.get((kind, key), [])
            if len({nid for nid, _ in got}) >= expect or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.002)
        first: dict[int, float] = {}
        for nid, t in self.receipts.pop((kind, key), []):
            first.setdefault(nid, t)
        return {"receipts": list(first.items())}

    async def cmd_stats(self) -> dict[str, Any]:
        return {"cpu": self._cpu(), "received": dict(self.received),
                "online": sum(1 for n in self.nodes.values() if n.online),
                "errors": self._take_errors()}

    def _take_errors(self) -> list[str]:
        out, self.errors = self.errors[:50], []
        return out


def client_main(conn: mpc.Connection, ports: list[int], server_pub: bytes, node_ids: list[int],
                nofile: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the orchestrator ends us by PID
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise_nofile(nofile)
    asyncio.run(Client(conn, ports, server_pub, node_ids).run())


# ================================================================== orchestrator
class ServerProc:
    """The coordination server in a subprocess, with its state in ``tmp``."""

    def __init__(self, tmp: Path, nofile: int, profile: str | None, database: str | None = None,
                 key_from: Path | None = None) -> None:
        self.tmp = tmp
        self.database = database
        self.key_from = key_from
        self.nofile = nofile
        self.profile = profile
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.pub = b""
        self.log_path = tmp / "server.log"
        self.shutdown_s: float | None = None

    @staticmethod
    def _free_port() -> int:
        with socket.socket() as s:
            s.bind((HOST, 0))
            return int(s.getsockname()[1])

    def start(self) -> None:
        self.port = self._free_port()
        cfg = self.tmp / "server.toml"
        cfg.write_text(f'state_dir = "{self.tmp / "state"}"\n'
                       f'listen = "{HOST}:{self.port}"\n'
                       "discovery = []\n"
                       + (f'database = "{self.database}"\n' if self.database else "")
                       # every simulated node comes from this one address: lift the
                       # per-source admission limits meant for the internet
                       + "[limits]\nlogins_per_source = 1000000\n"
                       "registrations_per_source = 1000000\n"
                       "connections_per_source = 10000000\nhandshakes = 1000000\n"
                       "handshakes_per_source = 1000000\n"
                       "hash_queue_per_source = 100000\nhash_queue = 1000000\n")
        if self.key_from is not None:   # a cluster shares one server key
            (self.tmp / "state").mkdir(parents=True, exist_ok=True)
            shutil.copy2(self.key_from, self.tmp / "state" / "server.key")
        shoal = Path(sys.executable).parent / "shoal"
        cli = [str(shoal)] if shoal.exists() else [sys.executable, "-m", "shoal.cli"]
        init = subprocess.run([*cli, "server", "init", "-c", str(cfg)], check=False,
                              capture_output=True, text=True, timeout=60)
        if init.returncode != 0:
            raise Failed(f"shoal server init failed: {init.stderr.strip()}")
        self.pub = decode_public_key(init.stdout.strip().splitlines()[-1])
        run = [*cli, "server", "run", "-c", str(cfg)]
        if self.profile:
            run = [sys.executable, "-m", "cProfile", "-o", self.profile, "-m", "shoal.cli",
                   "server", "run", "-c", str(cfg)]
        argv = [sys.executable, "-c", SERVER_WRAPPER, str(self.nofile), str(os.getpid()), *run]
        with open(self.log_path, "wb") as logf:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self.check()
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise Failed("the server did not start listening within 30 s")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def check(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise Failed(f"the server exited ({self.proc.returncode}): {self.log_tail()}")

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip()
                              .splitlines()[-lines:])
        except OSError:
            return ""

    def rss(self) -> int:
        """VmRSS in bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise Failed("no VmRSS for the server")

    def cpu(self) -> float:
        """utime + stime of all threads, seconds."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def stop(self, timeout: float = 20) -> None:
        p = self.proc
        if p is None or p.poll() is not None:
            return
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
            self.shutdown_s = time.monotonic() - t0
        except subprocess.TimeoutExpired:
            log(f"the server did not stop within {timeout:.0f}s of SIGTERM; killing PID {p.pid}")
            p.kill()
            p.wait(5)


class ServerGroup:
    """Several servers measured as one (CPU and RSS summed), each also on its own."""

    def __init__(self, servers: list[ServerProc]) -> None:
        self.servers = servers

    @property
    def pid(self) -> int:
        return self.servers[0].pid

    @property
    def port(self) -> int:
        return self.servers[0].port

    @property
    def pub(self) -> bytes:
        return self.servers[0].pub

    @property
    def shutdown_s(self) -> float | None:
        times = [s.shutdown_s for s in self.servers if s.shutdown_s is not None]
        return max(times) if times else None

    def start(self) -> None:
        for s in self.servers:
            s.start()

    def check(self) -> None:
        for s in self.servers:
            s.check()

    def rss(self) -> int:
        return sum(s.rss() for s in self.servers)

    def cpu(self) -> float:
        return sum(s.cpu() for s in self.servers)

    def stop(self, timeout: float = 20) -> None:
        for s in self.servers:
            s.stop(timeout)


def tree_cpu(pid: int) -> float:
    """utime + stime of ``pid`` and its children (PostgreSQL's backends), seconds."""
    total = 0.0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(d.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


class Run:
    """One benchmark run with N nodes against a fresh server (or cluster of servers)."""

    def __init__(self, args: argparse.Namespace, nodes: int, tmp: Path) -> None:
        self.args = args
        self.n = nodes
        self.tmp = tmp
        self.pg: Any = None
        self.nservers = args.servers
        if args.postgres or args.servers > 1:
            from shoal.testing.postgres import PostgresCluster

            self.pg = PostgresCluster().start()
            url = self.pg.create_database("bench")
        else:
            url = None
        procs = []
        for i in range(args.servers):
            d = tmp / f"server{i}"
            d.mkdir()
            procs.append(ServerProc(d, nodes + 1024,
                                    args.server_profile and f"{args.server_profile}.{nodes}.{i}",
                                    url, procs[0].tmp / "state" / "server.key" if procs else None))
        self.server = ServerGroup(procs)
        self.procs: list[mp.process.BaseProcess] = []
        self.conns: list[mpc.Connection] = []
        self.keys: dict[int, str] = {}
        self.res: dict[str, Any] = {"nodes": nodes, "network_size": args.network_size,
                                    "clients": args.clients}

    # ------------------------------------------------------------ plumbing
    def client_of(self, nid: int) -> int:
        return nid % self.args.clients

    def ask(self, cmds: dict[int, dict[str, Any]], timeout: float, what: str = "requests"
            ) -> dict[int, Any]:
        """Send one command to each listed client; their replies."""
        for c, cmd in cmds.items():
            self.conns[c].send(cmd)
        replies: dict[int, Any] = {}
        progress: dict[int, int] = {}
        t0 = time.monotonic()
        deadline = t0 + timeout
        waiting = {self.conns[c]: c for c in cmds}
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failed(f"clients {sorted(waiting.values())} did not answer "
                             f"{next(iter(cmds.values()))['cmd']!r} within {timeout:.0f}s")
            for conn in mpc.wait(list(waiting), min(left, 1.0)):
                c = waiting.pop(conn)  # type: ignore[call-overload]
                try:
                    msg = conn.recv()  # type: ignore[union-attr]
                except EOFError:
                    raise Failed(f"client process {c} died") from None
                if isinstance(msg, dict) and "progress" in msg:
                    waiting[conn] = c
                    progress[c] = msg["progress"]
                    if c == min(cmds) and len(progress) == len(cmds):
                        log(f"  {sum(progress.values())} {what} done after "
                            f"{time.monotonic() - t0:.0f}s")
                    continue
                replies[c] = msg
            self.server.check()
            for c in waiting.values():
                if not self.procs[c].is_alive():
                    raise Failed(f"client process {c} died ({self.procs[c].exitcode})")
        return replies

    def start_clients(self) -> None:
        ctx = mp.get_context("fork")
        C = self.args.clients
        for c in range(C):
            parent, child = ctx.Pipe()
            ids = [i for i in range(self.n) if i % C == c]
            p = ctx.Process(target=client_main, name=f"control-bench-client-{c}",
                            args=(child, [s.port for s in self.server.servers],
                                  self.server.pub, ids,
                                  len(ids) + 1024), daemon=True)
            p.start()
            child.close()
            self.procs.append(p)
            self.conns.append(parent)
        deadline = time.monotonic() + 120
        for c, conn in enumerate(self.conns):
            if not conn.poll(max(0.0, deadline - time.monotonic())):
                raise Failed(f"client process {c} did not start")
            self.keys.update(conn.recv())

    def stop(self) -> None:
        # The server first: otherwise it would process N disconnects (each a presence change
        # sent to a whole network) before it gets to its SIGTERM.
        self.server.stop()
        if self.pg is not None:
            self.pg.stop()
        for conn in self.conns:
            try:
                conn.send({"cmd": "quit"})
            except (OSError, ValueError):
                pass
        for p in self.procs:
            p.join(3)
            if p.is_alive():
                p.terminate()   # SIGTERM to this PID
                p.join(3)
            if p.is_alive():
                p.kill()
                p.join(1)
        for conn in self.conns:
            conn.close()

    def _errors(self, replies: dict[int, Any], what: str) -> None:
        errs = [e for r in replies.values() for e in r.get("errors", [])]
        if errs:
            raise Failed(f"{what}: {len(errs)} failures, e.g. " + "; ".join(errs[:3]))

    # ------------------------------------------------------------ phases
    def run(self) -> dict[str, Any]:
        a = self.args
        self.server.start()
        self.start_clients()
        time.sleep(0.5)
        rss_start, self.res["server_pid"] = self.server.rss(), self.server.pid
        # The server hashes passwords in the default executor (min(32, CPUs + 4) threads).
        # Each thread that ran scrypt keeps its 16 MiB work buffer in its malloc arena, so
        # warm them all up first: that memory is per server, not per node.
        workers = min(32, (os.cpu_count() or 1) + 4)
        rss0 = rss_start
        for _ in range(4):   # until the RSS stops growing
            rep = self.ask({0: {"cmd": "warmup", "args": {"count": 2 * workers}}},
                           REQUEST_TIMEOUT)
            self._errors(rep, "warm-up")
            self._wait_server_idle()
            rss_prev, rss0 = rss0, self.server.rss()
            if rss0 - rss_prev < 2 << 20:
                break
        log(f"{self.n} nodes: server PID {self.server.pid} on {HOST}:{self.server.port}, "
            f"RSS {rss_start / 2**20:.1f} MiB, {rss0 / 2**20:.1f} MiB after the KDF warm-up; "
            f"{a.clients} client processes")

        # 1. logins
        per_client = max(1, math.ceil(a.login_concurrency / a.clients))
        mark = self._mark()
        rep = self.ask({c: {"cmd": "login", "args": {"concurrency": per_client}}
                        for c in range(a.clients)}, LOGIN_TIMEOUT + self.n)
        self._errors(rep, "login")
        self.res["login"] = self._phase(rep, mark)
        rss1 = self.server.rss()
        log(f"login: {self.res['login']['rate']:.0f}/s, p50 {self.res['login']['p50_ms']} ms, "
            f"p99 {self.res['login']['p99_ms']} ms; RSS {rss1 / 2**20:.1f} MiB")

        # 2. networks: one create per group, then everyone else joins
        size = a.network_size
        groups = [list(range(g, min(g + size, self.n))) for g in range(0, self.n, size)]
        if a.networks is not None:   # the other nodes stay online without a network
            groups = groups[:a.networks]
        self.groups = groups
        creates: dict[int, list[Any]] = defaultdict(list)
        joins: dict[int, list[Any]] = defaultdict(list)
        for gi, members in enumerate(groups):
            name, pw = f"bench-{gi:03d}", f"password-{gi:03d}"
            creates[self.client_of(members[0])].append(
                (members[0], "create", {"name": name, "password": pw,
                                        "member_limit": max(size, 1)}))
            for nid in members[1:]:
                joins[self.client_of(nid)].append((nid, "join", {"name": name, "password": pw}))
        mark = self._mark()
        rep = self.ask({c: {"cmd": "requests", "args": {"items": items, "concurrency": 64}}
                        for c, items in creates.items()}, REQUEST_TIMEOUT + 30)
        self._errors(rep, "create")
        self.res["create"] = self._phase(rep, mark)
        per_client = max(1, math.ceil(a.join_concurrency / a.clients))
        mark = self._mark()
        if joins:
            rep = self.ask({c: {"cmd": "requests",
                                "args": {"items": items, "concurrency": per_client}}
                            for c, items in joins.items()}, REQUEST_TIMEOUT + 2 * self.n, "joins")
            self._errors(rep, "join")
            self.res["join"] = self._phase(rep, mark)
            log(f"join: {self.res['join']['rate']:.1f}/s, p50 {self.res['join']['p50_ms']} ms, "
                f"p99 {self.res['join']['p99_ms']} ms, server CPU "
                f"{self.res['join']['server_cpu_pct']}%")
        # let the fan-out of the last joins drain before reading the RSS
        self._wait_server_idle()
        rss2 = self.server.rss()
        self.res["memory"] = {
            "rss_start_mib": round(rss_start / 2**20, 1),
            "rss_before_mib": round(rss0 / 2**20, 1), "rss_logged_in_mib": round(rss1 / 2**20, 1),
            "rss_joined_mib": round(rss2 / 2**20, 1),
            "per_node_login_kib": round((rss1 - rss0) / self.n / 1024, 1),
            "per_node_kib": round((rss2 - rss0) / self.n / 1024, 1)}
        if self.nservers > 1:
            self.res["memory"]["rss_joined_per_server_mib"] = [
                round(sv.rss() / 2**20, 1) for sv in self.server.servers]
        log(f"RSS after joins {rss2 / 2**20:.1f} MiB: {self.res['memory']['per_node_kib']} "
            "KiB per node")

        # 3. presence changes
        self.res["presence"] = self._presence()

        st = self.ask({c: {"cmd": "stats"} for c in range(a.clients)}, 30)
        self._errors(st, "stats")
        self.res["client_cpu_s"] = round(sum(r["cpu"] for r in st.values()), 1)
        received: dict[str, int] = defaultdict(int)
        for r in st.values():
            for k, v in r["received"].items():
                received[k] += v
        self.res["messages_received"] = dict(received)
        self.res["server_cpu_s"] = round(self.server.cpu(), 1)
        return self.res

    def _db_cpu(self) -> float:
        return tree_cpu(self.pg.proc.pid) if self.pg is not None else 0.0

    def _mark(self) -> tuple[float, float, tuple[float, float], float]:
        return time.monotonic(), self.server.cpu(), sys_busy(), self._db_cpu()

    def _phase(self, rep: dict[int, Any], mark: tuple[float, float, tuple[float, float], float]
               ) -> dict[str, Any]:
        w0, cpu0, busy0, db0 = mark
        times = [t for r in rep.values() for t in r["times"]]
        wall = time.monotonic() - w0
        server_cpu = self.server.cpu() - cpu0
        busy1 = sys_busy()
        machine_cpu = busy1[0] - busy0[0]
        client_cpu = sum(r["cpu"] for r in rep.values())
        db_cpu = self._db_cpu() - db0
        out = self._phase_figures(times, wall, server_cpu, client_cpu, machine_cpu, db_cpu)
        if self.nservers > 1:
            out["per_server"] = []
            for i in range(self.nservers):
                mine = [t for t in times if t[0] % self.nservers == i]
                lat_i = [t1 - t0 for _, t0, t1 in mine]
                span_i = (max(t1 for _, _, t1 in mine) - min(t0 for _, t0, _ in mine)) \
                    if mine else 0
                out["per_server"].append({
                    "count": len(mine), "rate": round(len(mine) / span_i, 1) if span_i else None,
                    "p50_ms": ms(pct(lat_i, 50)), "p99_ms": ms(pct(lat_i, 99))})
        return out

    def _phase_figures(self, times: list[Any], wall: float, server_cpu: float,
                       client_cpu: float, machine_cpu: float, db_cpu: float) -> dict[str, Any]:
        lat = [t1 - t0 for _, t0, t1 in times]
        span = (max(t1 for _, _, t1 in times) - min(t0 for _, t0, _ in times)) if times else 0
        return {"count": len(times), "seconds": round(span, 2),
                "rate": round(len(times) / span, 1) if span else None,
                "p50_ms": ms(pct(lat, 50)), "p99_ms": ms(pct(lat, 99)),
                "max_ms": ms(max(lat) if lat else None),
                "server_cpu_pct": round(100 * server_cpu / wall, 0) if wall else None,
                "clients_cpu_pct": round(100 * client_cpu / wall, 0) if wall else None,
                "db_cpu_pct": round(100 * db_cpu / wall, 0) if wall else None,
                # everything else the machine ran meanwhile (should be near 0)
                "other_cpu_pct": round(100 * max(0.0, machine_cpu - server_cpu - client_cpu
                                                 - db_cpu) / wall, 0) if wall else None}

    def _wait_server_idle(self, quiet: float = 0.5, timeout: float = 60) -> None:
        """Until the server used under 5% CPU over ``quiet`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            c0 = self.server.cpu()
            time.sleep(quiet)
            if self.server.cpu() - c0 < 0.05 * quiet:
                return

    def _presence(self) -> dict[str, Any]:
        a = self.args
        rng = random.Random(a.seed)
        groups = [g for g in self.groups if len(g) >= 2]
        events: list[dict[str, Any]] = []
        if not groups or a.events <= 0:
            return {"events": events}
        self.ask({c: {"cmd": "record", "args": {"on": True}} for c in range(a.clients)}, 10)
        picks = []
        for e in range(a.events):
            g = groups[e % len(groups)]
            picks.append((g, rng.choice(g[1:])))   # never the owner
        cpu0, w0 = self.server.cpu(), time.monotonic()
        for g, nid in picks:
            key = self.keys[nid]
            expect: dict[int, int] = defaultdict(int)
            for other in g:
                if other != nid:
                    expect[self.client_of(other)] += 1
            for kind in ("down", "up"):
                owner = self.client_of(nid)
                if kind == "down":
                    r = self.ask({owner: {"cmd": "disconnect", "args": {"nid": nid}}}, 10)[owner]
                else:
                    r = self.ask({owner: {"cmd": "connect", "args": {"nid": nid}}},
                                 LOGIN_TIMEOUT + 10)[owner]
                    if "error" in r:
                        raise Failed(r["error"])
                t_ev = r["t"]
                rep = self.ask({c: {"cmd": "wait", "args": {"kind": kind, "key": key,
                                                            "expect": expect.get(c, 0),
                                                            "timeout": EVENT_TIMEOUT}}
                                for c in range(a.clients)}, EVENT_TIMEOUT + 10)
                got = [t for rr in rep.values() for _, t in rr["receipts"]]
                want = sum(expect.values())
                if len(got) < want:
                    raise Failed(f"presence {kind} of node {nid}: only {len(got)} of {want} "
                                 f"members were told within {EVENT_TIMEOUT:.0f}s")
                lat = sorted(t - t_ev for t in got)
                ev = {"kind": kind, "node": nid, "receivers": len(lat),
                      "first_ms": ms(lat[0]), "p50_ms": ms(pct(lat, 50)),
                      "all_ms": ms(lat[-1]), "lat": lat}
                if self.nservers > 1:   # members on another server than the node's
                    home = nid % self.nservers
                    cross = sorted(t - t_ev for rr in rep.values() for rnid, t in rr["receipts"]
                                   if rnid % self.nservers != home)
                    same = sorted(t - t_ev for rr in rep.values() for rnid, t in rr["receipts"]
                                  if rnid % self.nservers == home)
                    ev["cross"], ev["same"] = cross, same
                if kind == "up":
                    ev["welcome_ms"] = ms(r["welcome"] - t_ev)
                events.append(ev)
                time.sleep(EVENT_GAP)
        wall = time.monotonic() - w0
        server_cpu = self.server.cpu() - cpu0
        self.ask({c: {"cmd": "record", "args": {"on": False}} for c in range(a.clients)}, 10)
        out: dict[str, Any] = {"server_cpu_s_per_event":
                               round(server_cpu / len(events), 3)}
        for kind in ("down", "up"):
            evs = [e for e in events if e["kind"] == kind]
            alls = [e["all_ms"] / 1000 for e in evs]
            each = [x for e in evs for x in e["lat"]]
            out[kind] = {"events": len(evs), "receivers": evs[0]["receivers"] if evs else 0,
                         "all_p50_ms": ms(pct(alls, 50)), "all_p99_ms": ms(pct(alls, 99)),
                         "member_p50_ms": ms(pct(each, 50)), "member_p99_ms": ms(pct(each, 99)),
                         "first_p50_ms": ms(pct([e["first_ms"] / 1000 for e in evs], 50))}
            if self.nservers > 1:
                for side in ("cross", "same"):
                    alls_s = [e[side][-1] for e in evs if e[side]]
                    each_s = [x for e in evs for x in e[side]]
                    out[kind][side] = {"all_p50_ms": ms(pct(alls_s, 50)),
                                       "all_p99_ms": ms(pct(alls_s, 99)),
                                       "member_p50_ms": ms(pct(each_s, 50)),
                                       "member_p99_ms": ms(pct(each_s, 99))}
                log(f"presence {kind}: cross-server all told p50 "
                    f"{out[kind]['cross']['all_p50_ms']} ms, p99 "
                    f"{out[kind]['cross']['all_p99_ms']} ms")
            log(f"presence {kind}: all members told p50 {out[kind]['all_p50_ms']} ms, "
                f"p99 {out[kind]['all_p99_ms']} ms")
        for e in events:
            del e["lat"]
            e.pop("cross", None)
            e.pop("same", None)
        out["events"] = events
        out["wall_s"] = round(wall, 1)
        return out


# ================================================================== report
def fmt(x: Any, nd: int = 1) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def print_report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print()
    print(f"Shoal coordination server ({args.commit}), {os.cpu_count()} CPUs, "
          + (f"{args.servers} servers on one PostgreSQL, " if args.servers > 1 else
             ("PostgreSQL, " if args.postgres else ""))
          + 
          f"networks of {args.network_size}, "
          f"{args.clients} client processes, login concurrency {args.login_concurrency}, "
          f"join concurrency {args.join_concurrency}; load average at the end "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print("CPU% is of one core, over the phase's wall time; 'other' is whatever else the "
          "machine ran meanwhile")
    for r in results:
        if "error" in r and "login" not in r:
            print(f"\n{r['nodes']} nodes: FAILED: {r['error']}")
            continue
        nets = len(range(0, r['nodes'], args.network_size))
        if args.networks is not None:
            nets = min(nets, args.networks)
        print(f"\n{r['nodes']} nodes ({nets} networks)"
              + (f"  FAILED: {r['error']}" if "error" in r else ""))
        rows = [("phase", "count", "time s", "rate /s", "p50 ms", "p99 ms", "max ms",
                 "server CPU%", "clients CPU%", "db CPU%", "other CPU%")]
        for ph in ("login", "create", "join"):
            p = r.get(ph)
            if p:
                rows.append((ph, fmt(p["count"]), fmt(p["seconds"], 2), fmt(p["rate"]),
                             fmt(p["p50_ms"]), fmt(p["p99_ms"]), fmt(p["max_ms"]),
                             fmt(p["server_cpu_pct"], 0), fmt(p["clients_cpu_pct"], 0),
                             fmt(p.get("db_cpu_pct"), 0), fmt(p["other_cpu_pct"], 0)))
                for i, ps in enumerate(p.get("per_server") or []):
                    rows.append((f"  server {i}", fmt(ps["count"]), "", fmt(ps["rate"]),
                                 fmt(ps["p50_ms"]), fmt(ps["p99_ms"]), "", "", "", "", ""))
        w = [max(len(x[i]) for x in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  " + "  ".join(c.rjust(w[i]) if i else c.ljust(w[i])
                                   for i, c in enumerate(row)))
        pr = r.get("presence") or {}
        for kind in ("down", "up"):
            p = pr.get(kind)
            if p:
                print(f"  presence {kind:4}: {p['events']} events x {p['receivers']} members; "
                      f"all told p50 {fmt(p['all_p50_ms'])} ms, p99 {fmt(p['all_p99_ms'])} ms; "
                      f"each member p50 {fmt(p['member_p50_ms'])} ms, "
                      f"p99 {fmt(p['member_p99_ms'])} ms; first {fmt(p['first_p50_ms'])} ms")
            for side, label in (("same", "same server"), ("cross", "other server")):
                q = (p or {}).get(side)
                if q:
                    print(f"    {label:12}: all told p50 {fmt(q['all_p50_ms'])} ms, "
                          f"p99 {fmt(q['all_p99_ms'])} ms; each member p50 "
                          f"{fmt(q['member_p50_ms'])} ms, p99 {fmt(q['member_p99_ms'])} ms")
        if pr.get("server_cpu_s_per_event") is not None:
            print(f"  presence server CPU per event: {pr['server_cpu_s_per_event'] * 1000:.0f} ms")
        mem = r.get("memory")
        if mem:
            print(f"  server RSS: {mem['rss_start_mib']} MiB at start, {mem['rss_before_mib']} MiB "
                  f"after the KDF warm-up, {mem['rss_logged_in_mib']} "
                  f"MiB logged in, {mem['rss_joined_mib']} MiB joined -> "
                  f"{mem['per_node_kib']} KiB per node ({mem['per_node_login_kib']} KiB "
                  "after login only)"
                  + (f"; per server {mem['rss_joined_per_server_mib']} MiB"
                     if mem.get("rss_joined_per_server_mib") else ""))
        if r.get("server_shutdown_s") is not None:
            print(f"  server shutdown (SIGTERM with every node online): "
                  f"{r['server_shutdown_s']:.1f} s")
    busy = [(r["nodes"], ph, r[ph]["other_cpu_pct"]) for r in results
            for ph in ("login", "join") if (r.get(ph) or {}).get("other_cpu_pct", 0) > 20]
    for n, ph, other in busy:
        print(f"warning: other processes used {other:.0f}% of a core during the {ph} phase of "
              f"the {n}-node run; its figures are pessimistic")
    if len(results) > 1:
        print("\nsummary")
        rows = [("nodes", "logins/s", "joins/s", "down all p50/p99 ms", "up all p50/p99 ms",
                 "KiB/node", "RSS MiB")]
        for r in results:
            pr = r.get("presence") or {}
            d, u = pr.get("down") or {}, pr.get("up") or {}
            rows.append((str(r["nodes"]), fmt((r.get("login") or {}).get("rate")),
                         fmt((r.get("join") or {}).get("rate")),
                         f"{fmt(d.get('all_p50_ms'))}/{fmt(d.get('all_p99_ms'))}",
                         f"{fmt(u.get('all_p50_ms'))}/{fmt(u.get('all_p99_ms'))}",
                         fmt((r.get("memory") or {}).get("per_node_kib")),
                         fmt((r.get("memory") or {}).get("rss_joined_mib"))))
        w = [max(len(x[i]) for x in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  " + "  ".join(c.rjust(w[i]) for i, c in enumerate(row)))


def machine_info() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "python": platform.python_version(), "loadavg": os.getloadavg()}


def source_commit() -> str:
    """The commit of the tree this script is in, '+' when core/ has local changes."""
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=True).stdout
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "core"],
                               capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.strip() + ("+" if dirty.strip() else "")


# ================================================================== main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", default="1000",
                   help="simulated nodes; a comma-separated list runs each size against a "
                        "fresh server (default 1000)")
    p.add_argument("--network-size", type=int, default=256, help="members per network")
    p.add_argument("--clients", type=int, default=2, help="client processes")
    p.add_argument("--login-concurrency", type=int, default=64,
                   help="logins in flight, over all clients")
    p.add_argument("--join-concurrency", type=int, default=16,
                   help="join requests in flight, over all clients")
    p.add_argument("--events", type=int, default=20,
                   help="presence events of each kind (down, then up again)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", metavar="PATH", help="write every figure as JSON")
    p.add_argument("--server-profile", metavar="PATH",
                   help="run the server under cProfile, stats to PATH.<nodes> (slows it down)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--servers", type=int, default=1,
                   help="coordination servers sharing one throwaway PostgreSQL (cluster mode "
                        "when more than 1); node i logs in to server i mod N")
    p.add_argument("--networks", type=int, metavar="K",
                   help="form only the first K networks (every node still logs in): joins "
                        "cost one scrypt each, so this keeps large runs short")
    p.add_argument("--postgres", action="store_true",
                   help="use a throwaway PostgreSQL even with one server")
    args = p.parse_args(argv)
    try:
        args.sizes = [int(x) for x in str(args.nodes).split(",") if x.strip()]
    except ValueError:
        p.error("--nodes takes integers, e.g. 1000 or 1000,2000,4000")
    if not args.sizes or min(args.sizes) < 1:
        p.error("--nodes must be at least 1")
    if args.network_size < 1 or args.clients < 1 or args.login_concurrency < 1 \
            or args.join_concurrency < 1 or args.servers < 1:
        p.error("--network-size, --clients and the concurrencies must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if sys.platform != "linux":
        print("control_plane.py needs Linux (/proc)", file=sys.stderr)
        return 2
    got = raise_nofile(max(args.sizes) + 1024)
    if got < max(args.sizes) // args.clients + 512:
        print(f"open-files limit is {got}; too low for {max(args.sizes)} nodes", file=sys.stderr)
        return 2

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    args.commit = source_commit()   # the server code measured
    results: list[dict[str, Any]] = []
    status = 0
    tmp_root = Path(tempfile.mkdtemp(prefix="shoal-control-bench-"))
    try:
        for n in args.sizes:
            tmp = tmp_root / f"n{n}"
            tmp.mkdir()
            run = Run(args, n, tmp)
            try:
                res = run.run()
            except Failed as e:
                log(f"{n} nodes: FAILED: {e}")
                res = dict(run.res, error=str(e))
                status = 1
            finally:
                run.stop()
            res["server_shutdown_s"] = (round(run.server.shutdown_s, 1)
                                        if run.server.shutdown_s is not None else None)
            results.append(res)
    except KeyboardInterrupt:
        log("interrupted")
        status = 130
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if args.keep:
            log(f"kept {tmp_root} (server logs and state)")
        else:
            shutil.rmtree(tmp_root, ignore_errors=True)
    if results:
        print_report(results, args)
        if args.json:
            Path(args.json).write_text(json.dumps(
                {"machine": machine_info(), "args": {k: v for k, v in vars(args).items()},
                 "runs": results}, indent=2) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
