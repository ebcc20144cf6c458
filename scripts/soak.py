#!/usr/bin/env python3
"""Soak: a server, a standalone relay and seven nodes behind NATs, with churn, for N minutes.

    sudo .venv/bin/python scripts/soak.py --minutes 60 [--period 20] [--keep]

Topology: ``shoal.testing.natlab`` sites, one node each behind none,
full-cone, address-restricted, port-restricted, symmetric (two) and
udp-blocked NATs; the coordination server on 203.0.113.10 announces a
standalone relay on 203.0.113.11:3481 (so the relay restarts on its own).
Every node is in the network "soak". Pings run without pause around the ring
of nodes (each to the next, 5 per second) while, every ``--period`` seconds,
one churn event happens, in turn:

    leave/join  a node leaves "soak" and joins again
    restart     a node stops and starts again
    rebind      a NAT forgets its mappings (new external ports)
    relay       the standalone relay restarts
    server      the coordination server restarts (every 5th cycle)

After each event, every ring pair must answer pings again within
``--recover`` seconds ("lost connectivity" otherwise). Every 10 s the resident
memory and open descriptors of every Shoal process are sampled. At the end the
first and last fifth of each long-lived process's samples are compared: the
run fails on lost connectivity, or when a process grew by more than 30 % +
10 MiB of memory or 20 descriptors. Not part of the test suite (it runs for
as long as it is asked to).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from shoal.testing import fleet, natlab
from shoal.testing.netlab import SHOAL, Lab, can_run, wait_until

NATS = [("none", "a"), ("full-cone", "b"), ("address-restricted", "c"),
        ("port-restricted", "d"), ("symmetric", "e"), ("symmetric", "f"),
        ("udp-blocked", "g")]
RELAY_UDP, RELAY_TCP = "203.0.113.11:3481", "203.0.113.11:3481"


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    started: float
    samples: list[tuple[float, int, int]] = field(default_factory=list)   # t, rss kB, fds


def sample(p: Proc) -> None:
    pid = p.popen.pid
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, AttributeError):
        return
    p.samples.append((time.monotonic(), rss, fds))


class Soak:
    def __init__(self, lab: Lab, args: argparse.Namespace) -> None:
        self.lab = lab
        self.args = args
        self.inet = natlab.internet(lab, serve=False)
        self.procs: dict[str, Proc] = {}
        self.retired: list[Proc] = []
        self.events: list[str] = []
        self.failures: list[str] = []
        self.recoveries: list[float] = []
        srv = self.inet.server_ns
        cfg = fleet.server_config(lab, relay=False)
        cfg.write_text(cfg.read_text() + f'''plugins = ["relay"]
[plugin.relay]
announce = [{{udp = "{RELAY_UDP}", tcp = "{RELAY_TCP}"}}]
''')
        self.server_cfg = cfg
        self.server_key = lab.shoal(srv, "server", "init", "-c", str(cfg)).stdout.split()[-1]
        self.relay_cfg = lab.write("relay.toml", f'''listen_udp = "{RELAY_UDP}"
listen_tcp = "{RELAY_TCP}"
secret_file = "{lab.dir}/relay.secret"
''')
        self.start_server()
        shutil.copy(lab.dir / "server" / "relay.secret", lab.dir / "relay.secret")
        os.chmod(lab.dir / "relay.secret", 0o600)
        self.start_relay()
        self.nodes: dict[str, tuple[fleet.NodeProc, natlab.Site]] = {}
        server = fleet.ServerProc(srv, cfg, self.server_key, self.procs["server"].popen)
        for i, (nat, name) in enumerate(NATS, start=1):
            site = natlab.add_site(lab, self.inet, nat, i)
            node = fleet.start_node(lab, site.host_ns, name, server,
                                    networks=[("soak", "soak-pw", i == 1)])
            self.nodes[name] = (node, site)
            assert node.proc is not None
            self.procs[name] = Proc(name, node.proc, time.monotonic())
            if i == 1:
                fleet.wait_online(lab, node, 30)
        self.vips = {}
        for name, (node, _) in self.nodes.items():
            self.vips[name] = fleet.wait_online(lab, node, 60)["node"]["virtual_ip"]
        names = list(self.nodes)
        self.ring = [(names[i], names[(i + 1) % len(names)]) for i in range(len(names))]
        self.pingers: dict[tuple[str, str], subprocess.Popen[bytes]] = {}

    # ------------------------------------------------------------ processes
    def _respawn(self, name: str, popen: subprocess.Popen[bytes]) -> None:
        old = self.procs.get(name)
        if old is not None:
            self.retired.append(old)
        self.procs[name] = Proc(name, popen, time.monotonic())

    def start_server(self) -> None:
        before = self.lab.log_text("server").count("listening")
        p = self.lab.spawn(self.inet.server_ns, [SHOAL, "server", "run", "-c",
                                                 str(self.server_cfg)], "server")
        wait_until(lambda: self.lab.log_text("server").count("listening") > before, 20,
                   what="the server")
        self._respawn("server", p)

    def start_relay(self) -> None:
        before = self.lab.log_text("relay").count("relay listening")
        p = self.lab.spawn(self.inet.server_ns, [SHOAL, "relay", "run", "-c",
                                                 str(self.relay_cfg)], "relay")
        wait_until(lambda: self.lab.log_text("relay").count("relay listening") > before, 20,
                   what="the relay")
        self._respawn("relay", p)

    def start_pings(self) -> None:
        for a, b in self.ring:
            node = self.nodes[a][0]
            self.pingers[(a, b)] = self.lab.spawn(
                node.ns, ["ping", "-n", "-i", "0.2", "-W", "1", self.vips[b]], f"ping-{a}-{b}")

    def ping_ok(self, a: str, b: str) -> bool:
        r = self.lab.sh(self.nodes[a][0].ns, f"ping -n -q -c 2 -i 0.2 -W 1 {self.vips[b]}",
                        check=False, timeout=10)
        return r.returncode == 0

    def check_ring(self, what: str) -> None:
        start = time.monotonic()
        for a, b in self.ring:
            left = self.args.recover - (time.monotonic() - start)
            try:
                wait_until(lambda a=a, b=b: self.ping_ok(a, b), max(1.0, left), interval=0.5,
                           what=f"{a} -> {b}")
            except TimeoutError:
                self.failures.append(f"after {what}: {a} -> {b} lost for > "
                                     f"{self.args.recover:.0f} s")
        self.recoveries.append(time.monotonic() - start)

    # ------------------------------------------------------------ churn
    def event(self, cycle: int) -> str:
        lab = self.lab
        name = random.choice([n for n in self.nodes if n != "a"])   # "a" owns the network
        node, site = self.nodes[name]
        kinds = ["leave/join", "restart", "rebind", "relay"]
        kind = "server" if cycle % 5 == 4 else kinds[cycle % len(kinds)]
        if kind == "leave/join":
            lab.shoal(node.ns, "network", "leave", "soak", "-c", str(node.config), check=False)
            time.sleep(2)
            lab.shoal(node.ns, "network", "join", "soak", "--password", "soak-pw", "-c",
                      str(node.config), check=False)
            return f"{name} left and joined"
        if kind == "restart":
            assert node.proc is not None
            lab.stop(node.proc)
            node.proc = lab.spawn(node.ns, [SHOAL, "up", "-c", str(node.config)], name)
            self._respawn(name, node.proc)
            fleet.wait_online(lab, node, 60)
            return f"{name} restarted"
        if kind == "rebind":
            natlab.rebind(lab, site)
            return f"{name}'s NAT ({site.nat}) rebound"
        if kind == "relay":
            lab.stop(self.procs["relay"].popen)
            time.sleep(1)
            self.start_relay()
            return "relay restarted"
        lab.stop(self.procs["server"].popen)
        time.sleep(2)
        self.start_server()
        return "server restarted"

    def run(self) -> int:
        args = self.args
        self.start_pings()
        self.check_ring("start")
        self.run_started = time.monotonic()
        end = self.run_started + args.minutes * 60
        next_sample = 0.0
        next_event = time.monotonic() + args.period
        cycle = 0
        try:
            while time.monotonic() < end:
                now = time.monotonic()
                if now >= next_sample:
                    for p in self.procs.values():
                        sample(p)
                    next_sample = now + 10
                if now >= next_event:
                    what = self.event(cycle)
                    self.events.append(what)
                    print(f"[{(now - end) / 60 + args.minutes:6.1f} min] {what}", flush=True)
                    self.check_ring(what)
                    cycle += 1
                    next_event = time.monotonic() + args.period
                time.sleep(0.5)
        except KeyboardInterrupt:
            self.failures.append(f"stopped early, after {len(self.events)} events")
        for p in self.pingers.values():
            p.send_signal(signal.SIGINT)
            p.wait(5)
        return self.report()

    # ------------------------------------------------------------ figures
    def report(self) -> int:
        lab = self.lab
        ran = (time.monotonic() - self.run_started) / 60
        print(f"\nsoak: {ran:.0f} of {self.args.minutes:.0f} min, {len(self.events)} churn events "
              f"(period {self.args.period:.0f} s), {len(self.recoveries)} ring checks, "
              f"slowest ring recovery {max(self.recoveries or [0]):.1f} s")
        total = lost = 0
        for (a, b) in self.pingers:
            m = re.search(r"(\d+) packets transmitted, (\d+) received",
                          lab.log_text(f"ping-{a}-{b}"))
            if m:
                total += int(m.group(1))
                lost += int(m.group(1)) - int(m.group(2))
        print(f"continuous pings around the ring: {total} sent, {lost} lost "
              f"({100 * lost / max(1, total):.2f} %, across every churn event)")
        print(f"\n{'process':10} {'lived min':>9} {'rss first MiB':>14} {'rss last MiB':>13} "
              f"{'rss max MiB':>12} {'fds first':>9} {'fds last':>9} {'fds max':>8}")
        growth = []
        for p in sorted(list(self.procs.values()) + self.retired, key=lambda p: p.name):
            s = p.samples
            if len(s) < 2:
                continue
            k = max(1, len(s) // 5)
            rss0 = sum(x[1] for x in s[:k]) / k / 1024
            rss1 = sum(x[1] for x in s[-k:]) / k / 1024
            fd0 = sum(x[2] for x in s[:k]) / k
            fd1 = sum(x[2] for x in s[-k:]) / k
            lived = (s[-1][0] - s[0][0]) / 60
            print(f"{p.name:10} {lived:9.1f} {rss0:14.1f} {rss1:13.1f} "
                  f"{max(x[1] for x in s) / 1024:12.1f} {fd0:9.0f} {fd1:9.0f} "
                  f"{max(x[2] for x in s):8d}")
            if lived >= min(10.0, self.args.minutes / 2) and len(s) >= 10:
                if rss1 > rss0 * 1.3 + 10 or fd1 > fd0 + 20:
                    growth.append(f"{p.name}: rss {rss0:.1f} -> {rss1:.1f} MiB, "
                                  f"fds {fd0:.0f} -> {fd1:.0f}")
        problems = self.failures + [f"growth: {g}" for g in growth]
        for line in problems:
            print("FAIL", line)
        print("soak passed" if not problems else f"soak FAILED ({len(problems)} problems)")
        return 1 if problems else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--period", type=float, default=20, help="seconds between churn events")
    ap.add_argument("--recover", type=float, default=30,
                    help="seconds every ring pair has to answer again after an event")
    ap.add_argument("--keep", action="store_true", help="keep the lab's logs")
    args = ap.parse_args()
    reason = can_run()
    if reason:
        print(f"soak: {reason}", file=sys.stderr)
        return 2
    if args.keep:
        os.environ["SHOAL_KEEP_LAB"] = "1"

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # SIGTERM (and SIGINT, which a background job ignores) end the run early:
    # the figures so far are printed and the lab is cleaned up
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with Lab("sok") as lab:
        print(f"soak lab in {lab.dir}", flush=True)
        return Soak(lab, args).run()


if __name__ == "__main__":
    sys.exit(main())
