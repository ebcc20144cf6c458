"""Network-namespace labs for end-to-end tests, the demo and benchmarks.

A ``Lab`` creates namespaces and veth links under a unique name prefix, starts
processes inside them, and on ``close`` (also on failure, via ``with``) ends
exactly the processes it started, by PID, then deletes its namespaces.

Addresses used by labs (network rules): 192.0.2.0/24, 198.51.100.0/24 and
203.0.113.0/24 for the "internet", 192.168.x.0/24 behind NAT routers,
100.64.0.0/10 for the overlay. Nothing else is ever a destination.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SHOAL = str(Path(sys.executable).with_name("shoal"))


def can_run() -> str | None:
    """None if labs can run here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, TUN devices)"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun"
    if shutil.which("ip") is None:
        return "needs iproute2 ('ip')"
    return None


def wait_until(cond: Callable[[], Any], timeout: float, interval: float = 0.1,
               what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last_exc = e
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}"
                       + (f" (last error: {last_exc})" if last_exc else ""))


class Lab:
    def __init__(self, tag: str = "lab") -> None:
        # interface names are limited to 15 characters: keep prefixes short
        self.prefix = f"s{tag[:3]}{secrets.token_hex(2)}"
        self.dir = Path(tempfile.mkdtemp(prefix=f"shoal-{self.prefix}-"))
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[Any] = []

    # ----------------------------------------------------------- topology
    def ns(self, name: str) -> str:
        full = f"{self.prefix}-{name}"
        subprocess.run(["ip", "netns", "add", full], check=True)
        self.namespaces.append(full)
        self.sh(full, "ip link set lo up")
        self.sh(full, "sysctl -qw net.ipv4.ping_group_range='0 2147483647'")
        return full

    def link(self, ns_a: str, addr_a: str, ns_b: str, addr_b: str, mtu: int = 1500) -> tuple[str, str]:
        n = len([x for x in self.namespaces]) + len(self.procs) + secrets.randbelow(1000)
        ia, ib = f"{self.prefix}a{n}"[:15], f"{self.prefix}b{n}"[:15]
        subprocess.run(["ip", "link", "add", ia, "netns", ns_a, "type", "veth", "peer", "name",
                        ib, "netns", ns_b], check=True)
        for ns, i, a in ((ns_a, ia, addr_a), (ns_b, ib, addr_b)):
            self.sh(ns, f"ip addr add {a} dev {i}")
            self.sh(ns, f"ip link set {i} mtu {mtu} up")
        return ia, ib

    def switch(self, name: str = "sw") -> str:
        """A namespace holding one Linux bridge: hosts ``attach`` to it like to a switch."""
        ns = self.ns(name)
        self.sh(ns, "ip link add br0 type bridge && ip link set br0 up")
        return ns

    def attach(self, switch_ns: str, ns: str, addr: str, mtu: int = 1500) -> str:
        """Connect ``ns`` to the switch with address ``addr``; returns the host-side interface."""
        n = secrets.token_hex(2)
        host_if, sw_if = f"{self.prefix}h{n}"[:15], f"{self.prefix}s{n}"[:15]
        subprocess.run(["ip", "link", "add", host_if, "netns", ns, "type", "veth", "peer", "name",
                        sw_if, "netns", switch_ns], check=True)
        self.sh(switch_ns, f"ip link set {sw_if} master br0 && ip link set {sw_if} up")
        self.sh(ns, f"ip addr add {addr} dev {host_if} && ip link set {host_if} mtu {mtu} up")
        return host_if

    def sh(self, ns: str, cmd: str, check: bool = True, timeout: float = 60
           ) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", cmd], capture_output=True,
                           text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"[{ns}] {cmd!r} failed ({r.returncode}): {r.stderr.strip()}")
        return r

    def spawn(self, ns: str, argv: list[str], log_name: str) -> subprocess.Popen[bytes]:
        log = open(self.dir / f"{log_name}.log", "ab")
        self._logs.append(log)
        p = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=log, stderr=log,
                             stdin=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def log_text(self, log_name: str) -> str:
        try:
            return (self.dir / f"{log_name}.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # ----------------------------------------------------------- shoal nodes
    def write(self, name: str, text: str) -> Path:
        p = self.dir / name
        p.write_text(text)
        return p

    def shoal(self, ns: str, *args: str, check: bool = True, timeout: float = 30
              ) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(["ip", "netns", "exec", ns, SHOAL, *args], capture_output=True,
                           text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"shoal {' '.join(args)} failed: {r.stderr.strip()}")
        return r

    def status(self, ns: str, config: Path) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.shoal(ns, "status", "--json", "-c", str(config)).stdout)
        return out

    def stop(self, p: subprocess.Popen[bytes], timeout: float = 10) -> int:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return p.returncode

    # ----------------------------------------------------------- teardown
    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for f in self._logs:
            f.close()
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.namespaces.clear()
        if not (os.environ.get("SHOAL_KEEP_LAB") or os.environ.get("SHOAL_TEST_KEEP_LOGS")):
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
