#!/usr/bin/env python3
"""Where an idle round trip through Shoal goes: the same veth, measured layer by layer.

Two namespaces joined by one veth pair (as in throughput.py). Each row adds one
thing to the path of a small packet and its answer:

1. ``kernel``: ICMP echo over the veth, no user space at all;
2. ``python blocking``: a UDP echo served by a Python process blocked in
   ``recvfrom`` (one process wakeup per round trip on the serving side, plus
   the client's, which is a Python process too);
3. ``python asyncio``: the same echo served from an asyncio ``add_reader``
   callback, as Shoal's loops are (selector, handle, drain until EAGAIN);
4. ``shoal`` (and ``shoal-plain`` without offloads) and ``wireguard-go``: ICMP
   echo through the tunnel, which crosses four user-space hops per round trip
   (each node reads a packet from its TUN and sends it, and receives one and
   writes it).

The per-packet Python work of Shoal (seal, open, replay check, TUN write
preparation) is measured in-process with the engine's own objects, so the
report splits a Shoal round trip into kernel path, wakeups and dispatch, and
Shoal's own processing. Medians of ``--count`` round trips, ``--rounds`` times.

Run as root: .venv/bin/python bench/latency.py [--count 200] [--rounds 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
import timeit
from pathlib import Path

import vpn_anchors
from shoal.testing import netlab
from shoal.testing.netlab import Lab
from vpn_anchors import UNDER_A, UNDER_B

PY = sys.executable
ECHO_PORT = 9000

ECHO = """\
import asyncio, socket, sys
mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((host, port))
print("READY", flush=True)
if mode == "blocking":
    while True:
        d, a = s.recvfrom(2048)
        s.sendto(d, a)
s.setblocking(False)
if mode == "uvloop":
    import uvloop
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
async def main():
    def drain():
        while True:
            try:
                d, a = s.recvfrom(2048)
            except BlockingIOError:
                return
            s.sendto(d, a)
    asyncio.get_running_loop().add_reader(s.fileno(), drain)
    await asyncio.Event().wait()
asyncio.run(main())
"""

CLIENT = """\
import socket, statistics, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
rtts = []
for _ in range(n):
    t = time.perf_counter_ns()
    s.sendto(b"x" * 56, (host, port))
    try:
        s.recv(2048)
    except socket.timeout:
        continue
    rtts.append((time.perf_counter_ns() - t) / 1e3)
    time.sleep(0.01)
print("MEDIAN_US", statistics.median(rtts))
"""

PING_RE = re.compile(r"= [\d.]+/([\d.]+)/")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def ping_us(lab: Lab, ns: str, dst: str, count: int) -> float:
    """Median RTT (µs) of ``count`` pings 10 ms apart."""
    out = lab.sh(ns, f"ping -n -c {count} -i 0.01 -W 1 {dst}", timeout=count * 0.05 + 30).stdout
    rtts = [float(x) * 1000 for x in re.findall(r"time=([\d.]+) ms", out)]
    if not rtts:
        raise RuntimeError(f"no reply from {dst}: {out[-200:]}")
    return statistics.median(rtts)


def echo_us(lab: Lab, ns_a: str, ns_b: str, mode: str, count: int, tag: str,
            scripts: dict[str, Path]) -> float:
    p = lab.spawn(ns_b, [PY, str(scripts["echo"]), mode, UNDER_B, str(ECHO_PORT)], tag)
    try:
        netlab.wait_until(lambda: "READY" in lab.log_text(tag), 10, what="echo server")
        out = lab.sh(ns_a, f"{PY} {scripts['client']} {UNDER_B} {ECHO_PORT} {count}",
                     timeout=count * 0.05 + 30).stdout
        return float(out.split()[1])
    finally:
        lab.stop(p)


def tunnel_us(lab: Lab, anchor: vpn_anchors.Anchor, ns_a: str, ns_b: str, count: int,
              tag: str) -> float:
    up = anchor.start(lab, ns_a, ns_b, tag)
    try:
        netlab.wait_until(lambda: lab.sh(ns_a, f"ping -n -c1 -W1 {up.dst}",
                                         check=False).returncode == 0, 30, what="tunnel up")
        time.sleep(0.5)
        return ping_us(lab, ns_a, up.dst, count)
    finally:
        for p in up.procs:
            lab.stop(p)
        up.cleanup()


def shoal_processing_us() -> dict[str, float]:
    """Shoal's own work per small packet (µs), with the engine's objects, in this process."""
    from shoal import wire
    from shoal.handshake import SessionKeys
    from shoal.offload.coalesce import Coalescer
    from shoal.session import Session

    key = os.urandom(32)
    tx = Session(SessionKeys(key, key, wire.CIPHER_AES_256_GCM, 1, 2, True, b""), 0.0)
    rx = Session(SessionKeys(key, key, wire.CIPHER_AES_256_GCM, 2, 1, False, b""), 0.0)
    pkt = bytes.fromhex("45000054000040004001") + bytes(10) + os.urandom(64)
    sealed = [tx.seal(pkt) for _ in range(20000)]
    it = iter(sealed)
    n = 20000
    seal = timeit.timeit(lambda: tx.seal(pkt), number=n) / n * 1e6
    opened = timeit.timeit(lambda: rx.open(next(it)), number=n) / n * 1e6
    co = Coalescer()

    def deliver() -> None:
        co.add(pkt)
        co.flush()
    gro = timeit.timeit(deliver, number=n) / n * 1e6
    return {"seal": round(seal, 2), "open_and_replay_check": round(opened, 2),
            "coalesce_and_flush": round(gro, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    why = netlab.can_run()
    if why:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    rows: dict[str, list[float]] = {}
    with Lab("lat") as lab:
        ns_a, ns_b = lab.ns("a"), lab.ns("b")
        lab.link(ns_a, f"{UNDER_A}/24", ns_b, f"{UNDER_B}/24")
        scripts = {"echo": lab.write("echo.py", ECHO), "client": lab.write("client.py", CLIENT)}
        vpns: dict[str, vpn_anchors.Anchor] = {
            "shoal": vpn_anchors.Shoal("aes-256-gcm"),
            "shoal-plain": vpn_anchors.Shoal("aes-256-gcm", offload=False, suffix="p"),
            "wireguard-go": vpn_anchors.WireguardGo()}
        for a in vpns.values():
            a.prepare(lab, ns_a, ns_b)
        for rnd in range(args.rounds):
            log(f"round {rnd + 1}/{args.rounds}")
            rows.setdefault("kernel (ICMP over the veth)", []).append(
                ping_us(lab, ns_a, UNDER_B, args.count))
            for mode in ("blocking", "asyncio", "uvloop"):
                rows.setdefault(f"python {mode} UDP echo", []).append(
                    echo_us(lab, ns_a, ns_b, mode, args.count, f"echo-{mode}-{rnd}", scripts))
            for name, a in vpns.items():
                rows.setdefault(f"{name} (ICMP through the tunnel)", []).append(
                    tunnel_us(lab, a, ns_a, ns_b, args.count, f"{name}-{rnd}"))
    proc = shoal_processing_us()
    # each round's figure is a median of --count round trips; the report takes the
    # lowest round, the one least disturbed by whatever else the machine was doing
    med = {k: round(min(v), 1) for k, v in rows.items()}
    print()
    print(f"Idle round trips (µs): per round the median of {args.count}, reported the lowest of "
          f"{args.rounds} rounds; loadavg {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    width = max(map(len, med))
    for k, v in med.items():
        print(f"  {k.ljust(width)}  {v:8.1f}   per round: "
              + " ".join(f"{x:.0f}" for x in rows[k]))
    kernel = med["kernel (ICMP over the veth)"]
    blocking = med["python blocking UDP echo"]
    asyncio_ = med["python asyncio UDP echo"]
    uv = med["python uvloop UDP echo"]
    wake = max(0.0, (blocking - kernel) / 2)
    dispatch = max(0.0, uv - blocking)   # shoal up runs on uvloop
    dispatch_asyncio = max(0.0, asyncio_ - blocking)
    work = proc["seal"] + proc["open_and_replay_check"] + proc["coalesce_and_flush"]
    shoal = med["shoal (ICMP through the tunnel)"]
    print()
    print("Breakdown of one Shoal round trip (4 user-space hops: 2 TUN reads, 2 UDP reads):")
    print(f"  kernel path (veth, ICMP, TUN)         ~{kernel:7.1f}")
    print(f"  4 process wakeups (blocking)          ~{4 * wake:7.1f}   ({wake:.1f} each)")
    print(f"  4 event-loop dispatches (uvloop)      ~{4 * dispatch:7.1f}   ({dispatch:.1f} each; "
          f"asyncio's own loop: {dispatch_asyncio:.1f} each)")
    print(f"  Shoal's work, 2 x (seal + open + TUN) ~{2 * work:7.1f}   ({proc})")
    rest = shoal - kernel - 4 * wake - 4 * dispatch - 2 * work
    print(f"  unexplained (syscalls, scheduling)    ~{rest:7.1f}")
    print(f"  total measured                         {shoal:7.1f}   "
          f"(wireguard-go {med['wireguard-go (ICMP through the tunnel)']:.1f})")
    if args.json:
        Path(args.json).write_text(json.dumps({"median_us": med, "rounds_us": rows,
                                               "shoal_processing_us": proc}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
