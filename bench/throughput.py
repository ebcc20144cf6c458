#!/usr/bin/env python3
"""Throughput and RTT of Shoal against wireguard-go, in the same run and topology.

Two network namespaces joined by one veth pair (198.51.100.1/24 - 198.51.100.2/24,
veth MTU 1500). Each round brings up one VPN at a time (tunnel MTU 1420), measures
idle ping RTT then one iperf3 TCP stream a -> b, and tears it down; the two VPNs
alternate within every round and the order flips from one round to the next.

Overlays: Shoal 100.64.0.1/.2 (/10), wireguard-go 100.64.1.1/.2 (/24).

Run as root:  .venv/bin/python bench/throughput.py [--seconds 10] [--runs 3]
              [--cipher chacha20-poly1305|aes-256-gcm] [--json PATH]
Exit status: 0 if every measurement succeeded, 1 if a VPN did not carry a ping
or iperf3 failed, 2 if the benchmark cannot run here.
"""

from __future__ import annotations

import argparse
import json
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
from pathlib import Path
from typing import Any

from shoal.testing import netlab
from shoal.testing import fleet
from shoal.testing.netlab import Lab

UNDER_A, UNDER_B = "198.51.100.1", "198.51.100.2"
VETH_MTU = 1500
TUN_MTU = 1420
SHOAL_PORT = 41641
WG_PORT = 51820
IPERF_PORT = 5201
SHOAL_A, SHOAL_B = "100.64.0.1", "100.64.0.2"
WG_A, WG_B = "100.64.1.1", "100.64.1.2"
WG_SOCK_DIR = Path("/var/run/wireguard")
CLK_TCK = os.sysconf("SC_CLK_TCK")

PING_RE = re.compile(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms")
LOSS_RE = re.compile(r"([\d.]+)% packet loss")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Failed(Exception):
    """A VPN could not be measured in this run."""


@dataclass
class Run:
    vpn: str
    round: int
    ok: bool = False
    error: str = ""
    mbps: float | None = None
    retransmits: int | None = None
    ping_avg_ms: float | None = None
    ping_min_ms: float | None = None
    ping_max_ms: float | None = None
    ping_mdev_ms: float | None = None
    ping_loss_pct: float | None = None
    vpn_cpu_pct: float | None = None      # both VPN daemons, % of one core, during iperf3
    sys_cpu_pct: float | None = None      # whole machine busy, % of one core, during iperf3
    setup_s: float | None = None          # start of daemons to first overlay ping reply
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ process helpers
def run_tracked(lab: Lab, ns: str, argv: list[str], name: str, timeout: float) -> tuple[int, str]:
    """Run argv in ns as a lab-tracked process (so teardown ends it by PID); its output."""
    p = lab.spawn(ns, argv, name)
    try:
        rc = p.wait(timeout)
    except subprocess.TimeoutExpired:
        lab.stop(p, timeout=3)
        rc = -1
    return rc, lab.log_text(name)


def cpu_ticks(pids: list[int]) -> int:
    """utime + stime (all threads) of the given processes, in clock ticks."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])   # fields 14 and 15 of the full line
    return total


def sys_busy() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs from /proc/stat."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = f
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def overlay_ping_ok(lab: Lab, ns: str, dst: str) -> bool:
    return lab.sh(ns, f"ping -n -c1 -W1 {dst}", check=False, timeout=5).returncode == 0


def wait_overlay(lab: Lab, ns: str, dst: str, procs: list[subprocess.Popen[bytes]],
                 logs: list[str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p, name in zip(procs, logs):
            if p.poll() is not None:
                tail = lab.log_text(name).strip().splitlines()[-5:]
                raise Failed(f"{name} exited ({p.returncode}): " + " | ".join(tail))
        if overlay_ping_ok(lab, ns, dst):
            return
        time.sleep(0.2)
    raise Failed(f"no overlay ping to {dst} within {timeout:.0f}s")


# ------------------------------------------------------------------ measurement
def if_tx_bytes(lab: Lab, ns: str, ifname: str) -> int:
    return int(lab.sh(ns, f"cat /sys/class/net/{ifname}/statistics/tx_bytes").stdout)


def measure(lab: Lab, args: argparse.Namespace, ns_a: str, ns_b: str, dst: str, tun_if: str,
            vpn_pids: list[int], run: Run, tag: str) -> None:
    # idle ping
    rc, out = run_tracked(lab, ns_a, ["ping", "-n", "-q", "-c", str(args.ping_count), "-i",
                                      str(args.ping_interval), "-W1", dst],
                          f"ping-{tag}", timeout=args.ping_count * args.ping_interval + 15)
    m, loss = PING_RE.search(out), LOSS_RE.search(out)
    if loss:
        run.ping_loss_pct = float(loss.group(1))
    if not m:
        raise Failed(f"ping through the tunnel got no reply: {out.strip()[-200:]}")
    run.ping_min_ms, run.ping_avg_ms, run.ping_max_ms, run.ping_mdev_ms = map(float, m.groups())

    # iperf3, one TCP stream a -> b
    srv = lab.spawn(ns_b, ["iperf3", "-s", "-1", "-B", dst, "-p", str(IPERF_PORT)],
                    f"iperf3-server-{tag}")
    try:
        netlab.wait_until(
            lambda: srv.poll() is None and lab.sh(
                ns_b, f"ss -Hltn 'sport = :{IPERF_PORT}'", check=False).stdout.strip(),
            timeout=10, interval=0.05, what="iperf3 server listening")
        tx0 = if_tx_bytes(lab, ns_a, tun_if)
        c0, s0, t0 = cpu_ticks(vpn_pids), sys_busy(), time.monotonic()
        rc, out = run_tracked(
            lab, ns_a, ["iperf3", "-c", dst, "-p", str(IPERF_PORT), "-t", str(args.seconds),
                        "-J", "--connect-timeout", "5000"],
            f"iperf3-client-{tag}", timeout=args.seconds + 20)
        c1, s1, t1 = cpu_ticks(vpn_pids), sys_busy(), time.monotonic()
        tx1 = if_tx_bytes(lab, ns_a, tun_if)
    finally:
        lab.stop(srv, timeout=3)
    try:
        res = json.loads(out[out.index("{"):])
    except ValueError:
        raise Failed(f"iperf3 gave no JSON (rc {rc}): {out.strip()[-200:]}") from None
    if "error" in res or "sum_received" not in res.get("end", {}):
        raise Failed(f"iperf3 failed: {res.get('error', 'no result')}")
    end = res["end"]
    run.mbps = round(end["sum_received"]["bits_per_second"] / 1e6, 1)
    run.retransmits = end["sum_sent"].get("retransmits")
    # the stream must have crossed the tunnel interface, not some other route
    sent = end["sum_sent"]["bytes"]
    if tx1 - tx0 < 0.9 * sent:
        raise Failed(f"{tun_if} sent {tx1 - tx0} bytes but iperf3 sent {sent}")
    wall = t1 - t0
    run.vpn_cpu_pct = round(100 * (c1 - c0) / CLK_TCK / wall, 1)
    busy, total = s1[0] - s0[0], s1[1] - s0[1]
    run.sys_cpu_pct = round(100 * (os.cpu_count() or 1) * busy / total, 1) if total else None


def bench_shoal(lab: Lab, args: argparse.Namespace, ns_a: str, ns_b: str,
                cfgs: tuple[Path, Path], run: Run, tag: str) -> None:
    t0 = time.monotonic()
    pa = lab.spawn(ns_a, [netlab.SHOAL, "up", "-c", str(cfgs[0])], f"shoal-alice-{tag}")
    pb = lab.spawn(ns_b, [netlab.SHOAL, "up", "-c", str(cfgs[1])], f"shoal-bob-{tag}")
    try:
        wait_overlay(lab, ns_a, SHOAL_B, [pa, pb], [f"shoal-alice-{tag}", f"shoal-bob-{tag}"])
        run.setup_s = round(time.monotonic() - t0, 2)
        measure(lab, args, ns_a, ns_b, SHOAL_B, "shoal0", [pa.pid, pb.pid], run, tag)
        try:
            for p in lab.status(ns_a, cfgs[0]).get("peers", []):
                run.notes.append(
                    f"alice's peer {p.get('name')}: online={p.get('online')} "
                    f"path={p.get('path')} cipher={p.get('cipher')} "
                    f"tx_bytes={p.get('tx_bytes')} rx_bytes={p.get('rx_bytes')}")
        except Exception as e:  # noqa: BLE001 - status is informational here
            run.notes.append(f"status failed: {e}")
    finally:
        lab.stop(pa)
        lab.stop(pb)


def bench_wg(lab: Lab, args: argparse.Namespace, ns_a: str, ns_b: str,
             keys: dict[str, Path], run: Run, tag: str) -> None:
    ifa, ifb = f"{lab.prefix}wga", f"{lab.prefix}wgb"
    t0 = time.monotonic()
    env = ["env", "WG_PROCESS_FOREGROUND=1", "wireguard-go", "-f"]
    pa = lab.spawn(ns_a, [*env, ifa], f"wg-a-{tag}")
    pb = lab.spawn(ns_b, [*env, ifb], f"wg-b-{tag}")
    try:
        netlab.wait_until(lambda: all((WG_SOCK_DIR / f"{i}.sock").exists() for i in (ifa, ifb)),
                          timeout=10, interval=0.05, what="wireguard-go control sockets")
        pub = {k: keys[k].read_text().strip() for k in ("a.pub", "b.pub")}
        for ns, ifn, me, peer, peer_ep, addr, peer_ip in (
                (ns_a, ifa, "a", "b", UNDER_B, WG_A, WG_B),
                (ns_b, ifb, "b", "a", UNDER_A, WG_B, WG_A)):
            lab.sh(ns, f"wg set {ifn} private-key {keys[me + '.key']} listen-port {WG_PORT} "
                       f"peer {pub[peer + '.pub']} endpoint {peer_ep}:{WG_PORT} "
                       f"allowed-ips {peer_ip}/32")
            lab.sh(ns, f"ip addr add {addr}/24 dev {ifn} && ip link set {ifn} mtu {TUN_MTU} up")
        wait_overlay(lab, ns_a, WG_B, [pa, pb], [f"wg-a-{tag}", f"wg-b-{tag}"])
        run.setup_s = round(time.monotonic() - t0, 2)
        measure(lab, args, ns_a, ns_b, WG_B, ifa, [pa.pid, pb.pid], run, tag)
    finally:
        lab.stop(pa)
        lab.stop(pb)
        for i in (ifa, ifb):
            (WG_SOCK_DIR / f"{i}.sock").unlink(missing_ok=True)


# ------------------------------------------------------------------ setup
def shoal_configs(lab: Lab, ns_a: str, ns_b: str, cipher: str) -> tuple[Path, Path]:
    nodes = {"alice": (ns_a, SHOAL_A, UNDER_A), "bob": (ns_b, SHOAL_B, UNDER_B)}
    extra = f'[tunnel]\nciphers = ["{cipher}"]'
    paths: dict[str, Path] = {}
    keys: dict[str, str] = {}
    for name, (ns, vip, _) in nodes.items():
        paths[name] = fleet.static_node_config(lab, name, vip, SHOAL_PORT, extra,
                                                 mtu=TUN_MTU)
        keys[name] = lab.shoal(ns, "key", "public", "-c", str(paths[name])).stdout.strip()
    for name, other in (("alice", "bob"), ("bob", "alice")):
        fleet.add_static_peer(paths[name], other, keys[other],
                              f"{nodes[other][2]}:{SHOAL_PORT}", nodes[other][1])
    return paths["alice"], paths["bob"]


def wg_keys(lab: Lab) -> dict[str, Path]:
    keys: dict[str, Path] = {}
    old = os.umask(0o077)
    try:
        for n in ("a", "b"):
            priv = subprocess.run(["wg", "genkey"], capture_output=True, text=True,
                                  check=True).stdout
            pub = subprocess.run(["wg", "pubkey"], input=priv, capture_output=True, text=True,
                                 check=True).stdout
            keys[f"{n}.key"] = lab.write(f"wg-{n}.key", priv)
            keys[f"{n}.pub"] = lab.write(f"wg-{n}.pub", pub)
    finally:
        os.umask(old)
    return keys


def versions() -> dict[str, str]:
    def first_line(argv: list[str]) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
            return out.strip().splitlines()[0] if out.strip() else "?"
        except (OSError, subprocess.TimeoutExpired):
            return "?"
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {"shoal": first_line([netlab.SHOAL, "--version"]),
            "wireguard-go": first_line(["wireguard-go", "--version"]),
            "iperf3": first_line(["iperf3", "--version"]),
            "python": platform.python_version(),
            "kernel": platform.release(),
            "cpu": cpu,
            "cpus": str(os.cpu_count())}


# ------------------------------------------------------------------ report
def med(xs: list[float | None]) -> float | None:
    v = [x for x in xs if x is not None]
    return round(statistics.median(v), 3) if v else None


def fmt(x: float | None, nd: int = 1) -> str:
    return "NA" if x is None else f"{x:.{nd}f}"


def summarize(runs: list[Run], names: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        rs = [r for r in runs if r.vpn == name]
        out[name] = {
            "runs": len(rs), "failed": sum(not r.ok for r in rs),
            "mbps_median": med([r.mbps for r in rs]),
            "ping_avg_ms_median": med([r.ping_avg_ms for r in rs]),
            "vpn_cpu_pct_median": med([r.vpn_cpu_pct for r in rs]),
            "retransmits_median": med([r.retransmits for r in rs]),  # type: ignore[misc]
            "mbps": [r.mbps for r in rs],
            "ping_avg_ms": [r.ping_avg_ms for r in rs],
            "vpn_cpu_pct": [r.vpn_cpu_pct for r in rs],
        }
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def print_table(summary: dict[str, Any], ratios: dict[str, float | None],
                args: argparse.Namespace, labels: dict[str, str], env: dict[str, str]) -> None:
    def lst(xs: list[float | None], nd: int) -> str:
        return " ".join(fmt(x, nd) for x in xs)

    rows = [("VPN", "Mbit/s (median)", "Mbit/s per run", "ping avg ms (median)",
             "ping avg ms per run", "VPN CPU % (median)", "VPN CPU % per run", "failed")]
    for name, s in summary.items():
        rows.append((labels[name], fmt(s["mbps_median"]), lst(s["mbps"], 1),
                     fmt(s["ping_avg_ms_median"], 3), lst(s["ping_avg_ms"], 3),
                     fmt(s["vpn_cpu_pct_median"], 0), lst(s["vpn_cpu_pct"], 0),
                     f"{s['failed']}/{s['runs']}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print()
    print(f"iperf3 TCP, 1 stream, {args.seconds}s a->b; ping {args.ping_count} x "
          f"{args.ping_interval}s idle; {args.runs} runs each; tunnel MTU {TUN_MTU}, "
          f"veth MTU {VETH_MTU}")
    print(f"{env['shoal']}, {env['wireguard-go']}, {env['iperf3']}; {env['cpus']} CPUs; "
          f"loadavg {env['loadavg_start']} at start, {env['loadavg_end']} at end")
    print("VPN CPU = both VPN daemons during iperf3, % of one core")
    for i, r in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print()
    print(f"Shoal / wireguard-go throughput: {fmt(ratios['throughput'], 3)}   "
          f"RTT: {fmt(ratios['rtt'], 3)}   VPN CPU: {fmt(ratios['vpn_cpu'], 3)}")


# ------------------------------------------------------------------ main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=10, help="iperf3 duration (default 10)")
    ap.add_argument("--runs", type=int, default=3, help="rounds, each VPN once (default 3)")
    ap.add_argument("--cipher", choices=["chacha20-poly1305", "aes-256-gcm"],
                    default="chacha20-poly1305", help="Shoal data cipher")
    ap.add_argument("--ping-count", type=int, default=50)
    ap.add_argument("--ping-interval", type=float, default=0.02)
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the lab directory (logs)")
    a = ap.parse_args(argv)
    if a.runs < 1 or a.seconds < 1 or a.ping_count < 1:
        ap.error("--runs, --seconds and --ping-count must be at least 1")
    return a


def _terminate(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.keep:
        os.environ["SHOAL_KEEP_LAB"] = "1"  # Lab.close keeps its directory (logs)
    why = netlab.can_run()
    missing = [t for t in ("iperf3", "wireguard-go", "wg", "ping", "ss") if not shutil.which(t)]
    if why or missing:
        print(f"cannot run: {why or 'missing ' + ', '.join(missing)}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if inherited as ignored
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)

    names = ["shoal", "wireguard-go"]
    labels = {"shoal": f"shoal ({args.cipher})", "wireguard-go": "wireguard-go (chacha20)"}
    runs: list[Run] = []
    info = versions()
    load0 = Path("/proc/loadavg").read_text().split()[:3]
    ok = False
    lab = Lab("bench")
    try:
        with lab:
            ns_a, ns_b = lab.ns("a"), lab.ns("b")
            lab.link(ns_a, f"{UNDER_A}/24", ns_b, f"{UNDER_B}/24", mtu=VETH_MTU)
            if not overlay_ping_ok(lab, ns_a, UNDER_B):
                print("underlay ping failed", file=sys.stderr)
                return 2
            cfgs = shoal_configs(lab, ns_a, ns_b, args.cipher)
            keys = wg_keys(lab)
            log(f"lab {lab.prefix}, files in {lab.dir}")
            for rnd in range(args.runs):
                order = names if rnd % 2 == 0 else names[::-1]
                for name in order:
                    run = Run(name, rnd + 1)
                    tag = f"{name}-{rnd + 1}"
                    log(f"round {rnd + 1}/{args.runs}: {name}")
                    try:
                        if name == "shoal":
                            bench_shoal(lab, args, ns_a, ns_b, cfgs, run, tag)
                        else:
                            bench_wg(lab, args, ns_a, ns_b, keys, run, tag)
                        run.ok = True
                        log(f"  {run.mbps} Mbit/s, retr {run.retransmits}, ping avg "
                            f"{run.ping_avg_ms} ms (loss {run.ping_loss_pct}%), VPN CPU "
                            f"{run.vpn_cpu_pct}%, up in {run.setup_s}s")
                    except (Failed, TimeoutError, RuntimeError) as e:
                        run.error = str(e)
                        log(f"  FAILED: {e}")
                    runs.append(run)
                    time.sleep(1)
        ok = all(r.ok for r in runs)
    except KeyboardInterrupt:
        log("interrupted; lab torn down")
        return 130
    finally:
        for i in ("wga", "wgb"):  # normally removed in bench_wg already
            (WG_SOCK_DIR / f"{lab.prefix}{i}.sock").unlink(missing_ok=True)
        if ok and not args.keep:
            shutil.rmtree(lab.dir, ignore_errors=True)
        elif lab.dir.exists():
            log(f"logs kept in {lab.dir}")

    summary = summarize(runs, names)
    s, w = summary["shoal"], summary["wireguard-go"]
    ratios = {"throughput": ratio(s["mbps_median"], w["mbps_median"]),
              "rtt": ratio(s["ping_avg_ms_median"], w["ping_avg_ms_median"]),
              "vpn_cpu": ratio(s["vpn_cpu_pct_median"], w["vpn_cpu_pct_median"])}
    env = {**info, "loadavg_start": " ".join(load0),
           "loadavg_end": " ".join(Path("/proc/loadavg").read_text().split()[:3])}
    print_table(summary, ratios, args, labels, env)
    for r in runs:
        if not r.ok:
            print(f"FAILED {r.vpn} round {r.round}: {r.error}")
    if args.json:
        doc = {"benchmark": "throughput", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "params": {"seconds": args.seconds, "runs": args.runs, "cipher": args.cipher,
                          "ping_count": args.ping_count, "ping_interval": args.ping_interval,
                          "tun_mtu": TUN_MTU, "veth_mtu": VETH_MTU},
               "environment": env,
               "summary": summary, "ratios_shoal_over_wireguard_go": ratios,
               "runs": [asdict(r) for r in runs]}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        log(f"results written to {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
