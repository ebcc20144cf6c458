#!/usr/bin/env python3
"""NAT traversal times of Shoal for every pair of NAT types, with real NAT routers.

A ``shoal.testing.natlab`` lab (nftables routers of the RFC 4787 types none,
full-cone, address-restricted, port-restricted, symmetric, udp-blocked) with a
coordination server + relay (``shoal.testing.fleet``). A throw-away owner node
creates the network once and leaves. Then, for each pair of NAT types and each
run, two fresh sites (router + host) get one fresh node each; both start at
once, and the benchmark measures:

* first ping: from t0 = the moment the second node is online (the later of the
  two "logged in to" lines in the node logs, wall clock, ms) to the first reply
  of ``ping -D -n -i 0.01`` (wall clock, us) in either direction. One pinger
  per direction runs in each site's host; it starts as soon as both nodes are
  online and its own overlay address is configured (the lag is reported);
* the path after settling: ``peers[].path`` / ``.transport`` from each node's
  status (read from its API socket every 50 ms), once both sides report
  "direct" or after the settle window;
* direct after: t0 to the first status poll in which both sides report "direct";
* rebind recovery (selected pairs with an endpoint-independent NAT side): pings
  every 20 ms both ways, ``natlab.rebind`` on that side's router, time from the
  end of the rebind to the first reply, in each direction, to a ping sent after
  it (send time = reply time - rtt); the later of the two directions.

Then the pair's nodes and sites are removed (processes by PID, namespaces).

Run as root:  .venv/bin/python bench/traversal.py [--runs 3] [--pairs A:B,...]
              [--rebind auto|all|none] [--quick] [--json PATH] [--keep]
Exit status: 0 if every run connected, 1 if a pair never connected or a run
failed (the table is still printed), 2 if the benchmark cannot run here.
Targets are reported, they do not change the exit status.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from shoal import api
from shoal.testing import fleet, natlab, netlab
from shoal.testing.netlab import Lab

NAT_TYPES = natlab.NAT_TYPES
SHORT = {"none": "open", "full-cone": "full", "address-restricted": "addr",
         "port-restricted": "port", "symmetric": "sym", "udp-blocked": "blk"}
ALIASES = {**{n: n for n in NAT_TYPES}, **{s: n for n, s in SHORT.items()},
           "cone": "full-cone", "blocked": "udp-blocked"}
EI_SIDES = ("port-restricted", "address-restricted", "full-cone")  # preferred rebind side first
AUTO_REBIND = {("port-restricted", "port-restricted"), ("full-cone", "symmetric"),
               ("address-restricted", "symmetric"), ("port-restricted", "symmetric"),
               ("full-cone", "full-cone"), ("address-restricted", "address-restricted")}
QUICK_PAIRS = [("none", "none"), ("port-restricted", "port-restricted"),
               ("full-cone", "symmetric"), ("port-restricted", "symmetric"),
               ("symmetric", "symmetric"), ("port-restricted", "udp-blocked")]
NETWORK, PASSWORD = "bench", "traversal-bench"
MAX_INDEX = 49                    # natlab: site indices 1..49
POLL = 0.05                       # status poll interval (s)
PING_INTERVAL = 0.01              # first-ping pingers
REBIND_PING_INTERVAL = 0.02

LOGIN_RE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \S+ shoal\.control\.client: "
                      r"logged in to \S+ as (\S+)", re.MULTILINE)
REPLY_RE = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from [\d.]+: icmp_seq=(\d+) .*time=([\d.]+) ms",
                      re.MULTILINE)

# The figures. Nebula 1.6.1 was measured in this same lab.
REFERENCE = [
    ("port-restricted x port-restricted", "1.4 s"),
    ("cone x symmetric", "5.1 s"),
    ("port-restricted x symmetric", "only via relay, 5.3-6.3 s"),
    ("symmetric x symmetric", "via relay, 5-6 s (once never)"),
    ("udp-blocked x anything", "never"),
    ("rebind recovery", "~24 s"),
]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Failed(Exception):
    """This run could not be measured."""


def canon(a: str, b: str) -> tuple[str, str]:
    """A pair in NAT_TYPES order (so a:b and b:a are one pair)."""
    return (a, b) if NAT_TYPES.index(a) <= NAT_TYPES.index(b) else (b, a)


def pair_name(p: tuple[str, str]) -> str:
    return f"{p[0]}:{p[1]}"


def expected_path(p: tuple[str, str]) -> str:
    """What the product promises (see tests/test_nat_traversal_netns.py)."""
    return "relay" if "udp-blocked" in p or p == ("symmetric", "symmetric") else "direct"


def rebind_side(p: tuple[str, str]) -> int | None:
    """Index (0/1) of the side whose NAT gets rebound, None if no side is endpoint-independent."""
    for nat in EI_SIDES:
        if nat in p:
            return p.index(nat)
    return None


# ------------------------------------------------------------------ records
@dataclass
class Rebind:
    side: str                                   # node name of the rebound side
    nat: str
    ok: bool = False
    recovery_s: float | None = None             # max of both directions
    recovery_dir_s: dict[str, float | None] = field(default_factory=dict)
    nft_s: float | None = None                  # how long the rebind (nft -f) took
    path_before: str | None = None
    path_after: str | None = None               # at recovery
    direct_again_s: float | None = None         # rebind to both sides "direct" again
    endpoint_before: str | None = None          # the other side's view of the rebound node
    endpoint_after: str | None = None
    error: str = ""


@dataclass
class Run:
    pair: str
    run: int
    a: str                                      # node names
    b: str
    nat_a: str
    nat_b: str
    ok: bool = False                            # connected (a ping came back)
    error: str = ""
    vip: dict[str, str] = field(default_factory=dict)
    login_wall: dict[str, float] = field(default_factory=dict)
    t0_wall: float | None = None
    login_gap_s: float | None = None            # between the two logins
    pinger_lag_s: dict[str, float | None] = field(default_factory=dict)   # start - t0
    first_ping_s: float | None = None           # min over both directions
    first_ping_dir_s: dict[str, float | None] = field(default_factory=dict)
    first_ping_seq: dict[str, int | None] = field(default_factory=dict)
    first_ping_bounded: bool = False            # that reply answered the pinger's first ping
    path_at_first_ping: str | None = None
    path: str | None = None                     # settled: direct / relay / mixed / none
    path_detail: str | None = None              # path/transport, "a side | b side" if they differ
    transport: dict[str, str | None] = field(default_factory=dict)
    direct_s: float | None = None
    settle_window_s: float | None = None
    timeline: list[list[Any]] = field(default_factory=list)   # [t - t0, path a, tr a, path b, tr b]
    rebind: Rebind | None = None
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ lab helpers
class World:
    """The lab, the server, the network; sites come and go per run."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.inet = natlab.internet(lab, serve=False)   # the shoal server does discovery
        self.server = fleet.start_server(lab, self.inet.server_ns)
        self._indices = itertools.cycle(range(1, MAX_INDEX + 1))
        self._names = itertools.count(1)
        site = self.add_site("none")
        owner = fleet.start_node(lab, site.host_ns, "owner", self.server,
                                 networks=[(NETWORK, PASSWORD, True)])
        try:
            fleet.wait_online(lab, owner, timeout=30)
            netlab.wait_until(lambda: owner.status(lab)["networks"], 15, 0.1,
                              "the owner to create the network")
        finally:
            assert owner.proc is not None
            lab.stop(owner.proc)     # the network stays; its owner would only add noise
            self.remove_site(site)

    def add_site(self, nat: str) -> natlab.Site:
        index = next(self._indices)
        for attempt in range(3):
            try:
                return natlab.add_site(self.lab, self.inet, nat, index)
            except (RuntimeError, subprocess.CalledProcessError):
                # e.g. a veth name collision (netlab picks partly random names)
                for name in (f"r{index}", f"h{index}"):
                    self._del_ns(f"{self.lab.prefix}-{name}")
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _del_ns(self, ns: str) -> None:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        if ns in self.lab.namespaces:
            self.lab.namespaces.remove(ns)

    def remove_site(self, site: natlab.Site) -> None:
        """Delete the site's links (both veth ends at once) and namespaces."""
        for ifname in (site.wan_if, site.lan_if):
            subprocess.run(["ip", "-n", site.router_ns, "link", "del", ifname],
                           capture_output=True, check=False)
        self._del_ns(site.host_ns)
        self._del_ns(site.router_ns)
        # the index will be reused: forget the old routers' MAC addresses
        self.lab.sh(self.inet.server_ns, "ip neigh flush all", check=False)

    def node_name(self, nat: str, side: str) -> str:
        return f"{SHORT[nat]}{side}{next(self._names)}"

    def start_node(self, site: natlab.Site, name: str) -> fleet.NodeProc:
        return fleet.start_node(self.lab, site.host_ns, name, self.server,
                                networks=[(NETWORK, PASSWORD, False)])

    def socket(self, node: fleet.NodeProc) -> str:
        return str(self.lab.dir / f"{node.name}.sock")


def status(world: World, node: fleet.NodeProc) -> dict[str, Any] | None:
    """The node's status straight from its API socket (no CLI process); None if unavailable."""
    try:
        out: dict[str, Any] = api.call(world.socket(node), "status", timeout=2)
        return out
    except Exception:  # noqa: BLE001 - not up yet / shutting down
        return None


def peer_path(st: dict[str, Any] | None, peer: str) -> tuple[str, str | None]:
    if st is None:
        return "none", None
    for p in st.get("peers", []):
        if p["name"] == peer:
            return p["path"], p.get("transport")
    return "none", None


def peer_endpoint(st: dict[str, Any] | None, peer: str) -> str | None:
    for p in (st or {}).get("peers", []):
        if p["name"] == peer:
            return p.get("endpoint")
    return None


def login(lab: Lab, name: str) -> tuple[float, str] | None:
    """(wall clock, overlay address) of the node's first login, from its log."""
    m = LOGIN_RE.search(lab.log_text(name))
    if not m:
        return None
    ts = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return ts, m.group(2)


def start_pinger(lab: Lab, ns: str, dst: str, interval: float, log_name: str
                 ) -> subprocess.Popen[bytes]:
    """``ping -D`` from ``ns`` to ``dst`` once ``ns`` has its overlay address; before ping's
    output, the log has the wall clock of each step (``date +%s.%N``).

    ``dst`` may be ``@PEERLOG``: then the shell waits for the peer's "logged in to ... as
    ADDR" line in that log and pings ADDR, so the pinger can start before both nodes are
    online and nothing but a 5 ms sleep loop separates a login from the first ping."""
    wait_peer = ""
    if dst.startswith("@"):
        wait_peer = (f'while ! line=$(grep -m1 -oE "shoal\\.control\\.client: logged in to '
                     f'.* as [0-9.]+" {dst[1:]}); do sleep 0.005; done; dst=${{line##* }}; date +%s.%N; ')
        dst = "$dst"
    script = ('date +%s.%N; ' + wait_peer
              + 'while ! ip -4 -o addr show | grep -q " inet 100\\."; do sleep 0.005; done; '
              + f'date +%s.%N; exec ping -D -n -i {interval} {dst}')
    return lab.spawn(ns, ["sh", "-c", script], log_name)


def pinger_start(lab: Lab, log_name: str) -> float | None:
    """When ping itself was started: the last ``date`` line before ping's banner (the first
    ones are when the shell started and when it saw the peer's login)."""
    start = None
    for line in lab.log_text(log_name).splitlines():
        if line.startswith("PING"):
            return start
        try:
            start = float(line)
        except ValueError:
            return None
    return None


def replies(lab: Lab, log_name: str) -> list[tuple[float, int, float]]:
    """(receive wall clock, icmp_seq, rtt s) of every reply so far."""
    return [(float(t), int(seq), float(rtt) / 1000)
            for t, seq, rtt in REPLY_RE.findall(lab.log_text(log_name))]


def stop_all(lab: Lab, procs: list[subprocess.Popen[bytes] | None], timeout: float = 10) -> None:
    live = [p for p in procs if p is not None and p.poll() is None]
    for p in live:
        p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in live:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def path_label(pa: str, ta: str | None, pb: str, tb: str | None) -> str:
    if (pa, ta) == (pb, tb):
        return f"{pa}/{ta}" if ta else pa
    return f"{pa}/{ta} | {pb}/{tb}"


# ------------------------------------------------------------------ one run
def measure(world: World, pair: tuple[str, str], run_no: int, args: argparse.Namespace,
            do_rebind: bool) -> Run:
    lab = world.lab
    nat_a, nat_b = pair
    sites = [world.add_site(nat_a), world.add_site(nat_b)]
    names = [world.node_name(nat_a, "a"), world.node_name(nat_b, "b")]
    r = Run(pair_name(pair), run_no, names[0], names[1], nat_a, nat_b)
    procs: list[subprocess.Popen[bytes] | None] = []
    try:
        nodes = [world.start_node(s, n) for s, n in zip(sites, names)]
        procs += [n.proc for n in nodes]
        # one pinger per direction, waiting (in the site's host) for the peer's login line
        plogs = {f"{x.name}->{y.name}": f"ping-{x.name}-{y.name}"
                 for x, y in (nodes, nodes[::-1])}
        pingers = [start_pinger(lab, s.host_ns, f"@{lab.dir / (y.name + '.log')}",
                                PING_INTERVAL, plogs[f"{x.name}->{y.name}"])
                   for s, x, y in ((sites[0], *nodes), (sites[1], *nodes[::-1]))]
        procs += pingers
        connect(world, r, nodes, pair, args, plogs)
        for p in pingers:
            lab.stop(p, timeout=2)
        if do_rebind and r.ok:
            side = rebind_side(pair)
            assert side is not None
            r.rebind = rebind(world, r, sites, nodes, side, args, procs)
    except (Failed, TimeoutError, RuntimeError, subprocess.SubprocessError) as e:
        r.error = str(e)
    finally:
        stop_all(lab, procs)
        for s in sites:
            world.remove_site(s)
    return r


def check_alive(lab: Lab, nodes: list[fleet.NodeProc]) -> None:
    for n in nodes:
        if n.proc is not None and n.proc.poll() is not None:
            tail = lab.log_text(n.name).strip().splitlines()[-3:]
            raise Failed(f"{n.name} exited ({n.proc.returncode}): " + " | ".join(tail))


def connect(world: World, r: Run, nodes: list[fleet.NodeProc], pair: tuple[str, str],
            args: argparse.Namespace, plogs: dict[str, str]) -> None:
    lab = world.lab
    a, b = nodes
    # 1. both online: poll the logs every 5 ms
    deadline = time.monotonic() + args.login_timeout
    logins: list[tuple[float, str] | None] = [None, None]
    while not all(logins):
        check_alive(lab, nodes)
        if time.monotonic() > deadline:
            raise Failed(f"not both online within {args.login_timeout:.0f} s")
        logins = [logins[i] or login(lab, n.name) for i, n in enumerate(nodes)]
        time.sleep(0.005)
    assert logins[0] is not None and logins[1] is not None
    r.login_wall = {a.name: logins[0][0], b.name: logins[1][0]}
    r.vip = {a.name: logins[0][1], b.name: logins[1][1]}
    t0 = max(logins[0][0], logins[1][0])
    r.t0_wall = t0
    r.login_gap_s = round(abs(logins[0][0] - logins[1][0]), 3)

    dirs = list(plogs)

    # 2. first reply, status polls until both direct or the settle window has passed
    window = args.settle if expected_path(pair) == "direct" else args.settle_relay
    r.settle_window_s = window
    first_wall: float | None = None
    last: tuple[Any, ...] | None = None
    connect_deadline = time.time() + args.connect_timeout
    while True:
        check_alive(lab, nodes)
        now = time.time()
        pa, ta = peer_path(status(world, a), b.name)
        pb, tb = peer_path(status(world, b), a.name)
        cur = (pa, ta, pb, tb)
        if cur != last:
            r.timeline.append([round(now - t0, 3), *cur])
            last = cur
        if pa == pb == "direct" and r.direct_s is None:
            r.direct_s = round(now - t0, 3)
        if first_wall is None:
            got = [rep[0][0] for d in dirs if (rep := replies(lab, plogs[d]))]
            if got:
                first_wall = min(got)
            elif now > connect_deadline:
                break
        if first_wall is not None and (r.direct_s is not None or now - first_wall >= window):
            break
        time.sleep(POLL)

    for d in dirs:
        start = pinger_start(lab, plogs[d])
        r.pinger_lag_s[d] = None if start is None else round(start - t0, 3)
        rep = replies(lab, plogs[d])
        r.first_ping_dir_s[d] = round(rep[0][0] - t0, 3) if rep else None
        r.first_ping_seq[d] = rep[0][1] if rep else None
    got = [v for v in r.first_ping_dir_s.values() if v is not None]
    r.first_ping_s = min(got) if got else None
    r.ok = r.first_ping_s is not None
    if not r.ok:
        r.error = f"no overlay ping within {args.connect_timeout:.0f} s of both online"
    else:
        # the path when the first reply came: the last poll at or before it, else the next
        before = [e for e in r.timeline if e[0] <= r.first_ping_s]
        after = [e for e in r.timeline if e[0] > r.first_ping_s]
        e = before[-1] if before and "none" not in (before[-1][1], before[-1][3]) else \
            (after[0] if after else before[-1])
        r.path_at_first_ping = path_label(e[1], e[2], e[3], e[4])
        fastest = min((d for d in dirs if r.first_ping_dir_s[d] is not None),
                      key=lambda d: r.first_ping_dir_s[d] or 0.0)
        r.first_ping_bounded = r.first_ping_seq[fastest] == 1
        for d, seq in r.first_ping_seq.items():
            if seq == 1:
                r.notes.append(f"{d}: the very first ping was answered (time bounded by the "
                               f"pinger's start, {r.pinger_lag_s[d]} s after t0)")
    assert last is not None
    pa, ta, pb, tb = last
    r.path = pa if pa == pb else "mixed"
    r.path_detail = path_label(pa, ta, pb, tb)
    r.transport = {a.name: ta, b.name: tb}


def rebind(world: World, r: Run, sites: list[natlab.Site], nodes: list[fleet.NodeProc],
           side: int, args: argparse.Namespace,
           procs: list[subprocess.Popen[bytes] | None]) -> Rebind:
    lab = world.lab
    me, other = nodes[side], nodes[1 - side]
    site = sites[side]
    rb = Rebind(side=me.name, nat=site.nat)
    a, b = nodes
    dirs = {f"{a.name}->{b.name}": (sites[0], r.vip[b.name]),
            f"{b.name}->{a.name}": (sites[1], r.vip[a.name])}
    plogs = {d: f"rebind-ping-{d.replace('->', '-')}" for d in dirs}
    pingers = []
    for d, (s, dst) in dirs.items():
        pingers.append(start_pinger(lab, s.host_ns, dst, REBIND_PING_INTERVAL, plogs[d]))
    procs += pingers
    try:
        try:  # steady first: a few replies each way
            netlab.wait_until(lambda: all(len(replies(lab, plogs[d])) >= 5 for d in dirs),
                              5, 0.02, "steady pings before the rebind")
        except TimeoutError as e:
            rb.error = str(e)
            return rb
        sa, sb = status(world, a), status(world, b)
        rb.path_before = path_label(*peer_path(sa, b.name), *peer_path(sb, a.name))
        rb.endpoint_before = peer_endpoint(status(world, other), me.name)
        t_start = time.time()
        natlab.rebind(lab, site)
        t_rb = time.time()
        rb.nft_s = round(t_rb - t_start, 3)

        def recovered(d: str) -> float | None:
            for t, _seq, rtt in replies(lab, plogs[d]):
                if t - rtt >= t_rb:      # a ping sent after the rebind came back
                    return t
            return None

        deadline = t_rb + args.rebind_timeout
        got: dict[str, float | None] = {d: None for d in dirs}
        while time.time() < deadline:
            check_alive(lab, nodes)
            for d in dirs:
                got[d] = got[d] or recovered(d)
            if all(got.values()):
                break
            time.sleep(0.02)
        rb.recovery_dir_s = {d: None if t is None else round(t - t_rb, 3) for d, t in got.items()}
        if not all(got.values()):
            rb.error = f"no ping both ways within {args.rebind_timeout:.0f} s of the rebind"
            return rb
        rb.ok = True
        rb.recovery_s = round(max(t for t in got.values() if t is not None) - t_rb, 3)
        sa, sb = status(world, a), status(world, b)
        rb.path_after = path_label(*peer_path(sa, b.name), *peer_path(sb, a.name))
        if rb.path_before and rb.path_before.startswith("direct"):
            deadline = time.time() + args.settle
            while time.time() < deadline:
                pa, _ = peer_path(status(world, a), b.name)
                pb, _ = peer_path(status(world, b), a.name)
                if pa == pb == "direct":
                    rb.direct_again_s = round(time.time() - t_rb, 3)
                    break
                time.sleep(POLL)
        rb.endpoint_after = peer_endpoint(status(world, other), me.name)
        return rb
    finally:
        for p in pingers:
            lab.stop(p, timeout=2)


# ------------------------------------------------------------------ summary
def med(xs: list[float | None]) -> float | None:
    """Median where None (never) counts as infinitely late; None if the median is 'never'."""
    if not xs:
        return None
    v = statistics.median([math.inf if x is None else x for x in xs])
    return None if math.isinf(v) else round(v, 3)


def fmt(x: float | None, nd: int = 2, never: str = "never") -> str:
    return never if x is None else f"{x:.{nd}f}"


def majority(xs: list[str | None]) -> str:
    vals = [x or "-" for x in xs]
    if not vals:
        return "-"
    counts = {v: vals.count(v) for v in dict.fromkeys(vals)}
    if len(counts) == 1:
        return vals[0]
    return ", ".join(f"{v} x{n}" for v, n in counts.items())


@dataclass
class Target:
    name: str
    limit: float
    metric: str        # "first_ping" | "direct" | "rebind"
    nebula: str

    def applies(self, pair: tuple[str, str], s: dict[str, Any]) -> bool:
        if self.metric == "rebind":
            return bool(s["rebind_runs"])
        if self.name.startswith("port x port"):
            return pair == ("port-restricted", "port-restricted")
        if self.name.startswith("cone x symmetric"):
            return pair in (("full-cone", "symmetric"), ("address-restricted", "symmetric"))
        if self.name.startswith("port x symmetric"):
            return pair == ("port-restricted", "symmetric")
        if self.name.startswith("via relay"):   # reached first, or ended, over the relay
            return any(p and p.startswith("relay") for p in s["paths_at_first_ping"]) or \
                any(p == "relay" for p in s["paths"])
        return False


TARGETS = [
    Target("port x port: first ping <= 0.5 s", 0.5, "first_ping", "1.4 s"),
    Target("via relay: first ping <= 1 s", 1.0, "first_ping", "5-6.3 s, once never"),
    Target("cone x symmetric: first ping <= 1 s", 1.0, "first_ping", "5.1 s"),
    Target("port x symmetric: direct <= 3 s", 3.0, "direct", "never direct (relay only)"),
    Target("rebind recovery <= 3 s", 3.0, "rebind", "~24 s"),
]


def summarize(runs: list[Run], pairs: list[tuple[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in pairs:
        rs = [r for r in runs if r.pair == pair_name(p)]
        rb = [r.rebind for r in rs if r.rebind is not None]
        s: dict[str, Any] = {
            "runs": len(rs),
            "connected": sum(r.ok for r in rs),
            "expected_path": expected_path(p),
            "first_ping_s": [r.first_ping_s for r in rs],
            "first_ping_s_median": med([r.first_ping_s for r in rs]),
            "first_ping_bounded": [r.first_ping_bounded for r in rs],
            "paths": [r.path for r in rs],
            "paths_at_first_ping": [r.path_at_first_ping for r in rs],
            "path": majority([r.path_detail for r in rs]),
            "direct_s": [r.direct_s for r in rs],
            "direct_s_median": med([r.direct_s for r in rs]) if any(
                r.path == "direct" for r in rs) else None,
            "rebind_runs": len(rb),
            "rebind_side": rb[0].nat if rb else None,
            "rebind_s": [x.recovery_s for x in rb],
            "rebind_s_median": med([x.recovery_s for x in rb]) if rb else None,
            "rebind_path_after": majority([x.path_after for x in rb]) if rb else None,
            "rebind_direct_again_s": [x.direct_again_s for x in rb],
            "rebind_direct_again_s_median": med([x.direct_again_s for x in rb]) if rb else None,
            "errors": [r.error for r in rs if r.error] +
                      [f"rebind: {x.error}" for x in rb if x.error],
        }
        s["targets"] = []
        for t in TARGETS:
            if not rs or not t.applies(p, s):
                continue
            value = {"first_ping": s["first_ping_s_median"], "direct": med(s["direct_s"]),
                     "rebind": s["rebind_s_median"]}[t.metric]
            s["targets"].append({"target": t.name, "value": value,
                                 "met": value is not None and value <= t.limit})
        out[pair_name(p)] = s
    return out


def print_table(summary: dict[str, Any], args: argparse.Namespace, env: dict[str, Any],
                runs: list[Run]) -> None:
    lags = [v for r in runs for v in r.pinger_lag_s.values() if v is not None]
    rows = [("pair", "expect", "first ping s (med)", "per run", "path after settling",
             "direct after s (med)", "rebind recovery s (med)", "per run",
             "path at recovery; direct again s (med)", "targets")]
    for name, s in summary.items():
        tg = "; ".join(f"{t['target'].split(':')[0]} {'OK' if t['met'] else 'MISSED'}"
                       for t in s["targets"]) or "-"
        rows.append((
            name.replace("restricted", "restr"), s["expected_path"],
            fmt(s["first_ping_s_median"]),
            " ".join(fmt(x) + ("*" if b else "")
                     for x, b in zip(s["first_ping_s"], s["first_ping_bounded"])),
            s["path"],
            fmt(s["direct_s_median"], never="-" if not any(p == "direct" for p in s["paths"])
                else "never"),
            (f"{fmt(s['rebind_s_median'])} ({SHORT[s['rebind_side']]})"
             if s["rebind_runs"] else "-"),
            " ".join(fmt(x) for x in s["rebind_s"]) if s["rebind_runs"] else "",
            (f"{s['rebind_path_after']}; {fmt(s['rebind_direct_again_s_median'])}"
             if s["rebind_runs"] else ""),
            tg))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print()
    print(f"NAT traversal, {args.runs} run(s) per pair; {env['shoal']}; {env['cpus']} CPUs; "
          f"loadavg {env['loadavg_start']} at start, {env['loadavg_end']} at end")
    print("first ping: t0 = the later 'logged in to' line of the two node logs (wall clock, "
          "ms); first reply of ping -D -i 0.01, either direction")
    print("  pingers start once both are online and the pinging side has its overlay "
          f"address: {fmt(med(lags), 3)} s after t0 (median), up to {fmt(max(lags, default=None), 3)} s")
    print("direct after: t0 to the first 50 ms status poll (API socket) with path=direct on "
          "both sides; rebind: pings every 20 ms both ways, recovery = later direction "
          "(rebound side in brackets), direct again = rebind to path=direct on both sides; "
          "never = not within the time limit")
    if any(r.first_ping_bounded for r in runs):
        print("  * the pinger's very first ping was answered: the figure is bounded by the "
              "pinger's start, not by Shoal")
    for i, row in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))

    print()
    print("Reference (issue): Nebula 1.6.1 measured in this lab")
    for k, v in REFERENCE:
        print(f"  {k:<36} {v}")
    print()
    print("Targets (median of the runs; a 'never' median misses):")
    for t in TARGETS:
        hits = [(n, x) for n, s in summary.items() for x in s["targets"] if x["target"] == t.name]
        if not hits:
            print(f"  {t.name:<40} Nebula {t.nebula:<28} not measured in this invocation")
            continue
        for i, (n, x) in enumerate(hits):
            head = f"{t.name:<40} Nebula {t.nebula:<28}" if i == 0 else " " * 76
            print(f"  {head} {n:<40} {fmt(x['value']):>6} s  "
                  f"{'meets' if x['met'] else 'MISSES'}")


# ------------------------------------------------------------------ main
def parse_pairs(text: str) -> list[tuple[str, str]]:
    if text == "all":
        return list(itertools.combinations_with_replacement(NAT_TYPES, 2))
    out: list[tuple[str, str]] = []
    for item in text.split(","):
        try:
            a, b = (ALIASES[x.strip().lower()] for x in item.split(":"))
        except (KeyError, ValueError):
            raise argparse.ArgumentTypeError(
                f"bad pair {item!r}: use A:B with A, B in {', '.join(NAT_TYPES)} "
                f"(or {', '.join(SHORT.values())})") from None
        p = canon(a, b)
        if p not in out:
            out.append(p)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, help="runs per pair (default 3, 1 with --quick)")
    ap.add_argument("--pairs", type=parse_pairs,
                    help="comma-separated A:B pairs, e.g. port-restricted:symmetric,sym:sym "
                         "(default all 21; with --quick: " +
                         ",".join(f"{SHORT[a]}:{SHORT[b]}" for a, b in QUICK_PAIRS) + ")")
    ap.add_argument("--rebind", nargs="?", const="all", default="auto",
                    choices=["auto", "all", "none"],
                    help="rebind test: auto (default) = " +
                         ", ".join(sorted(f"{SHORT[a]}:{SHORT[b]}" for a, b in AUTO_REBIND)) +
                         "; all (or bare --rebind) = every pair with a full-cone, address- or "
                         "port-restricted side; none")
    ap.add_argument("--quick", action="store_true",
                    help="1 run of a 6-pair subset (about 2 minutes)")
    ap.add_argument("--settle", type=float, default=15.0,
                    help="seconds after the first ping to wait for a direct path, for pairs "
                         "expected to end direct (default 15)")
    ap.add_argument("--settle-relay", type=float, default=3.0,
                    help="the same for pairs expected to stay on the relay (default 3)")
    ap.add_argument("--login-timeout", type=float, default=30.0)
    ap.add_argument("--connect-timeout", type=float, default=20.0,
                    help="seconds after both online without a ping before 'never' (default 20)")
    ap.add_argument("--rebind-timeout", type=float, default=30.0,
                    help="seconds after a rebind without recovery before 'never' (default 30)")
    ap.add_argument("--json", metavar="PATH", help="write every run and the summary as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the lab directory (logs)")
    a = ap.parse_args(argv)
    if a.runs is None:
        a.runs = 1 if a.quick else 3
    if a.pairs is None:
        a.pairs = list(QUICK_PAIRS) if a.quick else parse_pairs("all")
    if a.runs < 1:
        ap.error("--runs must be at least 1")
    return a


def rebind_wanted(pair: tuple[str, str], mode: str) -> bool:
    if rebind_side(pair) is None or mode == "none":
        return False
    return mode == "all" or pair in AUTO_REBIND


def environment() -> dict[str, Any]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    ver = subprocess.run([netlab.SHOAL, "--version"], capture_output=True, text=True,
                         check=False).stdout
    pv = subprocess.run(["ping", "-V"], capture_output=True, text=True, check=False).stdout
    return {"shoal": ver.strip() or "?", "ping": pv.strip().splitlines()[0] if pv.strip() else "?",
            "python": platform.python_version(), "kernel": platform.release(), "cpu": cpu,
            "cpus": os.cpu_count()}


def _terminate(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    why = netlab.can_run()
    missing = [t for t in ("ping", "nft", "date") if not shutil.which(t)]
    if why or missing:
        print(f"cannot run: {why or 'missing ' + ', '.join(missing)}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)

    env = environment()
    env["loadavg_start"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    runs: list[Run] = []
    ok = False
    began = time.monotonic()
    lab = Lab("trv")
    try:
        with lab:
            log(f"lab {lab.prefix}, files in {lab.dir}")
            world = World(lab)
            log(f"server up, network {NETWORK!r} created ({time.monotonic() - began:.1f} s)")
            for run_no in range(1, args.runs + 1):
                for pair in args.pairs:
                    do_rb = rebind_wanted(pair, args.rebind)
                    r = measure(world, pair, run_no, args, do_rb)
                    runs.append(r)
                    rb = r.rebind
                    log(f"run {run_no}/{args.runs} {pair_name(pair)}: first ping "
                        f"{fmt(r.first_ping_s)} s ({r.path_at_first_ping}), settled "
                        f"{r.path} {sorted(set(map(str, r.transport.values())))}, direct "
                        f"{fmt(r.direct_s, never='-')}"
                        + (f", rebind {fmt(rb.recovery_s)} s -> {rb.path_after}" if rb else "")
                        + (f"  ERROR {r.error}" if r.error else "")
                        + (f"  REBIND {rb.error}" if rb and rb.error else ""))
            ok = all(r.ok and not r.error for r in runs)
            if args.keep or not ok:
                os.environ["SHOAL_KEEP_LAB"] = "1"    # Lab.close keeps its directory
    except KeyboardInterrupt:
        log("interrupted; lab torn down")
        return 130
    finally:
        if lab.dir.exists():
            log(f"logs kept in {lab.dir}")

    env["loadavg_end"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    env["elapsed_s"] = round(time.monotonic() - began, 1)
    summary = summarize(runs, args.pairs)
    print_table(summary, args, env, runs)
    print(f"\n{len(runs)} runs in {env['elapsed_s']} s")
    for r in runs:
        if r.error:
            print(f"FAILED {r.pair} run {r.run}: {r.error}")
    if args.json:
        doc = {"benchmark": "traversal", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "params": {"runs": args.runs, "pairs": [pair_name(p) for p in args.pairs],
                          "rebind": args.rebind, "settle": args.settle,
                          "settle_relay": args.settle_relay,
                          "connect_timeout": args.connect_timeout,
                          "rebind_timeout": args.rebind_timeout,
                          "ping_interval": PING_INTERVAL,
                          "rebind_ping_interval": REBIND_PING_INTERVAL, "status_poll": POLL},
               "method": {
                   "t0": "later of the two nodes' first 'logged in to' log lines (wall clock, ms)",
                   "first_ping": "first reply (ping -D, wall clock) in either direction - t0",
                   "direct": "first status poll with path=direct on both sides - t0",
                   "rebind": "first reply to a ping sent after natlab.rebind returned, later "
                             "of the two directions"},
               "reference_nebula_1_6_1": dict(REFERENCE),
               "targets": [asdict(t) for t in TARGETS],
               "environment": env, "summary": summary,
               "runs": [asdict(r) for r in runs]}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        log(f"results written to {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
