#!/usr/bin/env python3
"""Throughput and RTT of Shoal against wireguard-go, Nebula and OpenVPN, in one run.

Two network namespaces joined by one veth pair (198.51.100.1/24 - 198.51.100.2/24,
veth MTU 1500). Each round brings up one VPN at a time (tunnel MTU 1420), measures
idle ping RTT then one iperf3 TCP stream a -> b, and tears it down; the order of
the VPNs rotates from one round to the next. Then, unless ``--loss 0``, Shoal and
wireguard-go are measured again with 1 % of the underlay's UDP datagrams dropped
at random in each direction (nftables numgen), to show whether loss is amplified.
The report gives medians, Shoal's ratio to each anchor and to the fastest one,
CPU seconds per gigabit, and Shoal's idle RTT against wireguard-go's.
The VPNs and their configurations are in ``vpn_anchors.py``.

Run as root:  .venv/bin/python bench/throughput.py [--seconds 10] [--runs 3]
              [--cipher aes-256-gcm|chacha20-poly1305] [--vpns shoal,wireguard-go,...]
              [--loss 1] [--loss-runs 3] [--json PATH] [--keep]
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

import vpn_anchors
from shoal.testing import netlab
from shoal.testing.netlab import Lab
from vpn_anchors import TUN_MTU, UNDER_A, UNDER_B, WG_SOCK_DIR, Anchor, Shoal

VETH_MTU = 1500
IPERF_PORT = 5201
VPNS = ("shoal", "wireguard-go", "nebula", "openvpn")
EXTRA_VPNS = ("shoal-plain",)   # Shoal without offloads, on request
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
    cpu_s_per_gbit: float | None = None   # CPU seconds of both daemons per Gbit delivered
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
    gbit = end["sum_received"]["bytes"] * 8 / 1e9
    run.cpu_s_per_gbit = round((c1 - c0) / CLK_TCK / gbit, 3) if gbit else None
    busy, total = s1[0] - s0[0], s1[1] - s0[1]
    run.sys_cpu_pct = round(100 * (os.cpu_count() or 1) * busy / total, 1) if total else None


def bench_vpn(lab: Lab, args: argparse.Namespace, anchor: Anchor, ns_a: str, ns_b: str,
              run: Run, tag: str) -> None:
    t0 = time.monotonic()
    up = anchor.start(lab, ns_a, ns_b, tag)
    try:
        wait_overlay(lab, ns_a, up.dst, up.procs, up.logs)
        run.setup_s = round(time.monotonic() - t0, 2)
        measure(lab, args, ns_a, ns_b, up.dst, up.tun_if, [p.pid for p in up.procs], run, tag)
        if isinstance(anchor, Shoal):
            try:
                run.notes += anchor.status_notes(lab, ns_a)
            except Exception as e:  # noqa: BLE001 - status is informational here
                run.notes.append(f"status failed: {e}")
    finally:
        for p in up.procs:
            lab.stop(p)
        up.cleanup()


def set_loss(lab: Lab, namespaces: list[str], pct: float) -> None:
    """Drop ``pct`` % of the UDP datagrams each namespace sends (nftables numgen)."""
    for ns in namespaces:
        lab.sh(ns, "nft add table inet benchloss && nft add chain inet benchloss out "
                   "'{ type filter hook output priority 0; policy accept; }' && "
                   f"nft add rule inet benchloss out meta l4proto udp numgen random mod 10000 "
                   f"'<' {round(pct * 100)} drop")


def clear_loss(lab: Lab, namespaces: list[str]) -> None:
    for ns in namespaces:
        lab.sh(ns, "nft delete table inet benchloss", check=False)


def versions() -> dict[str, str]:
    def first_line(argv: list[str]) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10,
                                 check=False)
            text = (out.stdout or out.stderr).strip()
            return text.splitlines()[0] if text else "?"
        except (OSError, subprocess.TimeoutExpired):
            return "?"
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {"shoal": first_line([netlab.SHOAL, "--version"]),
            "wireguard-go": first_line(["wireguard-go", "--version"]),
            "nebula": first_line(["nebula", "-version"]),
            "openvpn": first_line(["openvpn", "--version"]),
            "iperf3": first_line(["iperf3", "--version"]),
            "python": platform.python_version(),
            "kernel": platform.release(),
            "cpu": cpu,
            "cpus": str(os.cpu_count())}


# ------------------------------------------------------------------ report
def med(xs: list[Any]) -> float | None:
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
            "cpu_s_per_gbit_median": med([r.cpu_s_per_gbit for r in rs]),
            "retransmits_median": med([r.retransmits for r in rs]),
            "mbps": [r.mbps for r in rs],
            "ping_avg_ms": [r.ping_avg_ms for r in rs],
            "vpn_cpu_pct": [r.vpn_cpu_pct for r in rs],
            "cpu_s_per_gbit": [r.cpu_s_per_gbit for r in rs],
        }
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def table(summary: dict[str, Any], labels: dict[str, str]) -> list[str]:
    def lst(xs: list[float | None], nd: int) -> str:
        return " ".join(fmt(x, nd) for x in xs)

    rows = [("VPN", "Mbit/s (median)", "Mbit/s per run", "ping avg ms (median)",
             "ping avg ms per run", "CPU s/Gbit (median)", "VPN CPU % (median)", "failed")]
    for name, s in summary.items():
        rows.append((labels[name], fmt(s["mbps_median"]), lst(s["mbps"], 1),
                     fmt(s["ping_avg_ms_median"], 3), lst(s["ping_avg_ms"], 3),
                     fmt(s["cpu_s_per_gbit_median"], 2), fmt(s["vpn_cpu_pct_median"], 0),
                     f"{s['failed']}/{s['runs']}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for i, r in enumerate(rows):
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def comparisons(summary: dict[str, Any], loss: dict[str, Any] | None) -> dict[str, Any]:
    """Shoal against the fastest anchor (throughput) and against wireguard-go (RTT, loss)."""
    anchors = {k: v for k, v in summary.items() if not k.startswith("shoal") and v["mbps_median"]}
    fastest = max(anchors, key=lambda k: anchors[k]["mbps_median"]) if anchors else None
    s = summary.get("shoal", {})
    out: dict[str, Any] = {"fastest_anchor": fastest, "throughput_vs": {}, "cpu_vs": {}}
    for k, v in summary.items():
        if k != "shoal":  # shoal-plain too: offloads against none
            out["throughput_vs"][k] = ratio(s.get("mbps_median"), v["mbps_median"])
            out["cpu_vs"][k] = ratio(s.get("cpu_s_per_gbit_median"), v["cpu_s_per_gbit_median"])
    out["throughput_vs_fastest"] = out["throughput_vs"].get(fastest) if fastest else None
    wg = summary.get("wireguard-go")
    out["rtt_vs_wireguard_go"] = ratio(s.get("ping_avg_ms_median"),
                                       wg["ping_avg_ms_median"]) if wg else None
    if loss and "shoal" in loss and "wireguard-go" in loss:
        out["loss_throughput_vs_wireguard_go"] = ratio(loss["shoal"]["mbps_median"],
                                                       loss["wireguard-go"]["mbps_median"])
        out["loss_retention"] = {
            k: ratio(loss[k]["mbps_median"], summary[k]["mbps_median"])
            for k in ("shoal", "wireguard-go") if k in summary}
    return out


def print_report(summary: dict[str, Any], loss: dict[str, Any] | None, cmp: dict[str, Any],
                 args: argparse.Namespace, labels: dict[str, str], env: dict[str, str]) -> None:
    print()
    print(f"iperf3 TCP, 1 stream, {args.seconds}s a->b; ping {args.ping_count} x "
          f"{args.ping_interval}s idle; {args.runs} runs each, alternating; tunnel MTU "
          f"{TUN_MTU}, veth MTU {VETH_MTU}")
    print("; ".join(env[k] for k in ("shoal", "wireguard-go", "nebula", "openvpn", "iperf3")))
    print(f"kernel {env['kernel']}; {env['cpus']} x {env['cpu']}; loadavg "
          f"{env['loadavg_start']} at start, {env['loadavg_end']} at end")
    print("CPU s/Gbit = CPU seconds of both VPN daemons per gigabit delivered; "
          "VPN CPU = both daemons, % of one core")
    for line in table(summary, labels):
        print(line)
    print()
    fastest = cmp["fastest_anchor"]
    if "shoal" in summary and fastest:
        print(f"Shoal / fastest anchor ({labels[fastest]}) throughput: "
              f"{fmt(cmp['throughput_vs_fastest'], 3)}  (goal: >= 2)")
        for k, r in cmp["throughput_vs"].items():
            print(f"  Shoal / {labels[k]}: throughput {fmt(r, 3)}, "
                  f"CPU per Gbit {fmt(cmp['cpu_vs'][k], 3)}")
    if cmp.get("rtt_vs_wireguard_go") is not None:
        print(f"Shoal / wireguard-go idle RTT: {fmt(cmp['rtt_vs_wireguard_go'], 3)}  "
              "(goal: <= 1)")
    if loss:
        print()
        print(f"With {args.loss}% random loss of the underlay's UDP datagrams, each direction "
              f"(nftables numgen), {args.loss_runs} runs each:")
        for line in table(loss, labels):
            print(line)
        if cmp.get("loss_throughput_vs_wireguard_go") is not None:
            ret = cmp["loss_retention"]
            print(f"Shoal / wireguard-go under loss: "
                  f"{fmt(cmp['loss_throughput_vs_wireguard_go'], 3)}; throughput kept under "
                  f"loss: Shoal {fmt(ret.get('shoal'), 3)}, wireguard-go "
                  f"{fmt(ret.get('wireguard-go'), 3)}")


# ------------------------------------------------------------------ main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=10, help="iperf3 duration (default 10)")
    ap.add_argument("--runs", type=int, default=3, help="rounds, each VPN once (default 3)")
    ap.add_argument("--cipher", choices=["chacha20-poly1305", "aes-256-gcm"],
                    default="aes-256-gcm", help="Shoal data cipher (default aes-256-gcm)")
    ap.add_argument("--vpns", default=",".join(VPNS),
                    help=f"comma-separated subset of {','.join(VPNS + EXTRA_VPNS)} "
                         f"(default: {','.join(VPNS)})")
    ap.add_argument("--loss", type=float, default=1.0,
                    help="%% UDP loss for the extra Shoal vs wireguard-go comparison "
                         "(default 1; 0 skips it)")
    ap.add_argument("--loss-runs", type=int, default=3, help="rounds under loss (default 3)")
    ap.add_argument("--ping-count", type=int, default=50)
    ap.add_argument("--ping-interval", type=float, default=0.02)
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the lab directory (logs)")
    a = ap.parse_args(argv)
    a.vpns = [v.strip() for v in a.vpns.split(",") if v.strip()]
    unknown = [v for v in a.vpns if v not in VPNS + EXTRA_VPNS]
    if unknown:
        ap.error(f"unknown VPN(s) {', '.join(unknown)}; choose from "
                 f"{', '.join(VPNS + EXTRA_VPNS)}")
    if a.runs < 1 or a.seconds < 1 or a.ping_count < 1 or a.loss_runs < 1:
        ap.error("--runs, --loss-runs, --seconds and --ping-count must be at least 1")
    if not 0 <= a.loss < 100:
        ap.error("--loss must be a percentage below 100")
    return a


def _terminate(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def rounds(lab: Lab, args: argparse.Namespace, chosen: dict[str, Anchor], ns_a: str, ns_b: str,
           n: int, phase: str) -> list[Run]:
    """``n`` rounds of every chosen VPN; the order rotates each round."""
    names = list(chosen)
    runs = []
    for rnd in range(n):
        k = rnd % len(names)
        order = names[k:] + names[:k]
        if rnd % 2:
            order = order[::-1]
        for name in order:
            run = Run(name, rnd + 1)
            tag = f"{phase}{name}-{rnd + 1}"
            log(f"{phase or 'main '}round {rnd + 1}/{n}: {name}")
            try:
                bench_vpn(lab, args, chosen[name], ns_a, ns_b, run, tag)
                run.ok = True
                log(f"  {run.mbps} Mbit/s, retr {run.retransmits}, ping avg "
                    f"{run.ping_avg_ms} ms (loss {run.ping_loss_pct}%), VPN CPU "
                    f"{run.vpn_cpu_pct}%, {run.cpu_s_per_gbit} CPU s/Gbit, up in {run.setup_s}s")
            except (Failed, TimeoutError, RuntimeError, subprocess.CalledProcessError) as e:
                run.error = str(e)
                log(f"  FAILED: {e}")
            runs.append(run)
            time.sleep(1)
    return runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.keep:
        os.environ["SHOAL_KEEP_LAB"] = "1"  # Lab.close keeps its directory (logs)
    all_anchors = vpn_anchors.anchors(args.cipher)
    chosen = {k: all_anchors[k] for k in args.vpns}
    why = netlab.can_run()
    need = {"iperf3", "ping", "ss", "nft"} | {t for a in chosen.values() for t in a.tools}
    missing = sorted(t for t in need if not shutil.which(t))
    if why or missing:
        print(f"cannot run: {why or 'missing ' + ', '.join(missing)}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if inherited as ignored
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)

    labels = {k: a.label for k, a in chosen.items()}
    runs: list[Run] = []
    loss_runs: list[Run] = []
    info = versions()
    load0 = Path("/proc/loadavg").read_text().split()[:3]
    ok = False
    lab = Lab("bench")
    try:
        with lab:
            ns_a, ns_b = lab.ns("a"), lab.ns("b")
            lab.link(ns_a, f"{UNDER_A}/24", ns_b, f"{UNDER_B}/24", mtu=VETH_MTU)
            try:
                netlab.wait_until(lambda: overlay_ping_ok(lab, ns_a, UNDER_B), 10,
                                  what="underlay ping")
            except TimeoutError:
                print("underlay ping failed", file=sys.stderr)
                return 2
            for a in chosen.values():
                a.prepare(lab, ns_a, ns_b)
            log(f"lab {lab.prefix}, files in {lab.dir}")
            runs = rounds(lab, args, chosen, ns_a, ns_b, args.runs, "")
            lossy = {k: chosen[k] for k in ("shoal", "wireguard-go") if k in chosen}
            if args.loss > 0 and len(lossy) == 2:
                set_loss(lab, [ns_a, ns_b], args.loss)
                try:
                    loss_runs = rounds(lab, args, lossy, ns_a, ns_b, args.loss_runs, "loss-")
                finally:
                    clear_loss(lab, [ns_a, ns_b])
        ok = all(r.ok for r in runs + loss_runs)
    except KeyboardInterrupt:
        log("interrupted; lab torn down")
        return 130
    finally:
        for i in ("wga", "wgb"):  # normally removed after each wireguard-go run already
            (WG_SOCK_DIR / f"{lab.prefix}{i}.sock").unlink(missing_ok=True)
        if ok and not args.keep:
            shutil.rmtree(lab.dir, ignore_errors=True)
        elif lab.dir.exists():
            log(f"logs kept in {lab.dir}")

    summary = summarize(runs, list(chosen))
    loss = summarize(loss_runs, ["shoal", "wireguard-go"]) if loss_runs else None
    cmp = comparisons(summary, loss)
    env = {**info, "loadavg_start": " ".join(load0),
           "loadavg_end": " ".join(Path("/proc/loadavg").read_text().split()[:3])}
    print_report(summary, loss, cmp, args, labels, env)
    for r in runs + loss_runs:
        if not r.ok:
            print(f"FAILED {r.vpn} round {r.round}: {r.error}")
    if args.json:
        doc = {"benchmark": "throughput", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "params": {"seconds": args.seconds, "runs": args.runs, "cipher": args.cipher,
                          "vpns": args.vpns, "loss_pct": args.loss,
                          "loss_runs": args.loss_runs, "ping_count": args.ping_count,
                          "ping_interval": args.ping_interval, "tun_mtu": TUN_MTU,
                          "veth_mtu": VETH_MTU},
               "environment": env, "summary": summary, "loss_summary": loss,
               "comparisons": cmp, "runs": [asdict(r) for r in runs],
               "loss_runs": [asdict(r) for r in loss_runs]}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        log(f"results written to {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
