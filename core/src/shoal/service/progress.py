"""What ``shoal up`` shows in a terminal while the node starts.

In a terminal (stderr is a TTY and systemd did not start us) ``shoal up``
prints one line per start-up step as it happens: interface up, logged in,
NAT found, each peer connected; then "ready" once every known peer is
connected, or a summary after ``SETTLE_MAX`` seconds. Under a service
manager, or with output redirected, nothing is printed (the log is the
record there).

``Progress.step(status)`` is pure: it compares a ``status`` snapshot (the
same dict as ``shoal status --json``) with what was already shown and
returns new lines; ``watch`` polls the node and writes them.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

POLL = 0.2
SETTLE_MAX = 45.0    # stop reporting after this long, whatever is missing
NO_PEERS_GRACE = 3.0  # logged in with no peers: wait this long for the peer list


def wanted(stream: TextIO, environ: Mapping[str, str] = os.environ) -> bool:
    """Progress lines only for a person at a terminal, never under systemd."""
    if environ.get("INVOCATION_ID") or environ.get("JOURNAL_STREAM"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    def __init__(self, has_server: bool) -> None:
        self.has_server = has_server
        self.interface = False
        self.logged_in = False
        self.nat = False
        self.connected: set[str] = set()
        self.done = False
        self._online_since: float | None = None

    def step(self, st: dict[str, Any], elapsed: float) -> list[str]:
        out: list[str] = []
        n = st.get("node", {})
        if not self.interface and n.get("interface"):
            self.interface = True
            addr = f" ({n['virtual_ip']})" if n.get("virtual_ip") and not self.has_server else ""
            out.append(f"interface {n['interface']} up{addr}")
            if self.has_server:
                out.append(f"logging in to {n.get('server')} ...")
        if self.has_server and not self.logged_in and n.get("online") and n.get("virtual_ip"):
            self.logged_in = True
            self._online_since = elapsed
            out.append(f"logged in as {n['virtual_ip']}")
        nat = n.get("nat") or {}
        if not self.nat and (nat.get("public_endpoint") or nat.get("udp") is False
                             or nat.get("mapping", "unknown") != "unknown"):
            self.nat = True
            if nat.get("udp") is False:
                out.append("NAT found: UDP is blocked, peers are reached through the relay")
            else:
                out.append(f"NAT found: mapping {nat.get('mapping')}, filtering "
                           f"{nat.get('filtering')}, public {nat.get('public_endpoint') or '-'}")
        peers = st.get("peers", [])
        for p in peers:
            if p.get("online") and p["name"] not in self.connected:
                self.connected.add(p["name"])
                rtt = f", {p['rtt_ms']:.1f} ms" if p.get("rtt_ms") is not None else ""
                out.append(f"peer {p['name']} connected ({p.get('path')} via "
                           f"{p.get('transport') or '-'}{rtt})")
        ready = self.logged_in or not self.has_server
        if ready and not self.done:
            names = {p["name"] for p in peers}
            since = self._online_since or 0.0
            if names and names <= self.connected:
                self.done = True
                out.append(f"ready: {len(names)}/{len(names)} peers connected")
            elif not names and elapsed - since >= NO_PEERS_GRACE:
                self.done = True
                out.append("ready: no other member is online yet")
        if not self.done and elapsed >= SETTLE_MAX:
            self.done = True
            names = {p["name"] for p in peers}
            missing = sorted(names - self.connected)
            out.append(f"still starting after {SETTLE_MAX:.0f} s: "
                       + (f"{len(self.connected)}/{len(names)} peers connected, waiting for "
                          f"{', '.join(missing)}" if missing else "not logged in yet")
                       + " (see 'shoal status')")
        return out


async def watch(status: Callable[[], dict[str, Any]], has_server: bool,
                stream: TextIO = sys.stderr) -> None:
    """Poll ``status`` and print new steps until the node is ready (or SETTLE_MAX)."""
    prog = Progress(has_server)
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not prog.done:
        try:
            lines = prog.step(status(), loop.time() - start)
        except Exception:  # noqa: BLE001 - the node is still starting: try again
            lines = []
        stream.writelines(f"shoal: {line}\n" for line in lines)
        stream.flush()
        await asyncio.sleep(POLL)
