"""The VPNs ``throughput.py`` measures, each brought up between the lab's two namespaces.

Configurations follow /work/shared/reference/anchors.sh (Debian's packages):

| VPN | overlay | cipher |
|---|---|---|
| Shoal | 100.64.0.1/10 - .2 | AES-256-GCM (``--cipher``), static peers, UDP 41641 |
| wireguard-go | 100.64.1.1/24 - .2 | ChaCha20-Poly1305 (the only one), UDP 51820 |
| Nebula | 100.64.2.1/24 - .2 | AES-256-GCM (``cipher: aes``), static host map, no lighthouse |
| OpenVPN | 100.64.4.1 - .2 (p2p) | AES-256-GCM, TLS with peer fingerprints, no DCO, UDP 1194 |

All use tunnel MTU 1420. Every daemon runs as a lab process (stopped by PID).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shoal.testing import fleet, netlab
from shoal.testing.netlab import Lab

UNDER_A, UNDER_B = "198.51.100.1", "198.51.100.2"
TUN_MTU = 1420
WG_SOCK_DIR = Path("/var/run/wireguard")


@dataclass
class Up:
    """A running VPN: its daemons, the overlay address of b, a's tunnel interface."""

    procs: list[subprocess.Popen[bytes]]
    logs: list[str]
    dst: str
    tun_if: str
    cleanup: Callable[[], None] = lambda: None
    notes: list[str] = field(default_factory=list)


class Anchor:
    name = ""
    label = ""
    tools: tuple[str, ...] = ()

    def prepare(self, lab: Lab, ns_a: str, ns_b: str) -> None:
        """One-time keys and configs."""

    def start(self, lab: Lab, ns_a: str, ns_b: str, tag: str) -> Up:
        raise NotImplementedError


class Shoal(Anchor):
    name = "shoal"
    tools = ()
    PORT = 41641
    A, B = "100.64.0.1", "100.64.0.2"

    def __init__(self, cipher: str, offload: bool = True, suffix: str = "") -> None:
        self.cipher = cipher
        self.offload = offload
        self.suffix = suffix   # node names alice<suffix>, bob<suffix>: several pairs per lab
        self.label = f"shoal ({cipher})" + ("" if offload else " no offloads")
        self.cfgs: tuple[Path, Path] | None = None

    def prepare(self, lab: Lab, ns_a: str, ns_b: str) -> None:
        al, bo = f"alice{self.suffix}", f"bob{self.suffix}"
        nodes = {al: (ns_a, self.A, UNDER_A), bo: (ns_b, self.B, UNDER_B)}
        extra = f'[tunnel]\nciphers = ["{self.cipher}"]'
        paths: dict[str, Path] = {}
        keys: dict[str, str] = {}
        for name, (ns, vip, _) in nodes.items():
            paths[name] = fleet.static_node_config(lab, name, vip, self.PORT, extra,
                                                     mtu=TUN_MTU, offload=self.offload)
            keys[name] = lab.shoal(ns, "key", "public", "-c", str(paths[name])).stdout.strip()
        for name, other in ((al, bo), (bo, al)):
            fleet.add_static_peer(paths[name], other, keys[other],
                                  f"{nodes[other][2]}:{self.PORT}", nodes[other][1])
        self.cfgs = (paths[al], paths[bo])

    def start(self, lab: Lab, ns_a: str, ns_b: str, tag: str) -> Up:
        assert self.cfgs is not None
        logs = [f"shoal-alice{self.suffix}-{tag}", f"shoal-bob{self.suffix}-{tag}"]
        pa = lab.spawn(ns_a, [netlab.SHOAL, "up", "-c", str(self.cfgs[0])], logs[0])
        pb = lab.spawn(ns_b, [netlab.SHOAL, "up", "-c", str(self.cfgs[1])], logs[1])
        return Up([pa, pb], logs, self.B, "shoal0")

    def status_notes(self, lab: Lab, ns_a: str) -> list[str]:
        assert self.cfgs is not None
        st = lab.status(ns_a, self.cfgs[0])
        out = [f"alice offloads: {st['node'].get('offloads')}"]
        for p in st.get("peers", []):
            out.append(f"alice's peer {p.get('name')}: online={p.get('online')} "
                       f"path={p.get('path')} cipher={p.get('cipher')} "
                       f"tx_bytes={p.get('tx_bytes')} rx_bytes={p.get('rx_bytes')}")
        return out


class WireguardGo(Anchor):
    name = "wireguard-go"
    label = "wireguard-go (chacha20)"
    tools = ("wireguard-go", "wg")
    PORT = 51820
    A, B = "100.64.1.1", "100.64.1.2"

    def prepare(self, lab: Lab, ns_a: str, ns_b: str) -> None:
        self.keys: dict[str, Path] = {}
        old = os.umask(0o077)
        try:
            for n in ("a", "b"):
                priv = subprocess.run(["wg", "genkey"], capture_output=True, text=True,
                                      check=True).stdout
                pub = subprocess.run(["wg", "pubkey"], input=priv, capture_output=True,
                                     text=True, check=True).stdout
                self.keys[f"{n}.key"] = lab.write(f"wg-{n}.key", priv)
                self.keys[f"{n}.pub"] = lab.write(f"wg-{n}.pub", pub)
        finally:
            os.umask(old)

    def start(self, lab: Lab, ns_a: str, ns_b: str, tag: str) -> Up:
        ifa, ifb = f"{lab.prefix}wga", f"{lab.prefix}wgb"
        env = ["env", "WG_PROCESS_FOREGROUND=1", "wireguard-go", "-f"]
        logs = [f"wg-a-{tag}", f"wg-b-{tag}"]
        pa = lab.spawn(ns_a, [*env, ifa], logs[0])
        pb = lab.spawn(ns_b, [*env, ifb], logs[1])

        def cleanup() -> None:
            for i in (ifa, ifb):
                (WG_SOCK_DIR / f"{i}.sock").unlink(missing_ok=True)
        up = Up([pa, pb], logs, self.B, ifa, cleanup)
        netlab.wait_until(lambda: all((WG_SOCK_DIR / f"{i}.sock").exists() for i in (ifa, ifb)),
                          timeout=10, interval=0.05, what="wireguard-go control sockets")
        pub = {k: self.keys[k].read_text().strip() for k in ("a.pub", "b.pub")}
        for ns, ifn, me, peer, peer_ep, addr, peer_ip in (
                (ns_a, ifa, "a", "b", UNDER_B, self.A, self.B),
                (ns_b, ifb, "b", "a", UNDER_A, self.B, self.A)):
            lab.sh(ns, f"wg set {ifn} private-key {self.keys[me + '.key']} listen-port "
                       f"{self.PORT} peer {pub[peer + '.pub']} endpoint {peer_ep}:{self.PORT} "
                       f"allowed-ips {peer_ip}/32")
            lab.sh(ns, f"ip addr add {addr}/24 dev {ifn} && ip link set {ifn} mtu {TUN_MTU} up")
        return up


class Nebula(Anchor):
    name = "nebula"
    label = "nebula (aes-256-gcm)"
    tools = ("nebula", "nebula-cert")
    PORT = 4242
    A, B = "100.64.2.1", "100.64.2.2"

    def prepare(self, lab: Lab, ns_a: str, ns_b: str) -> None:
        d = lab.dir / "nebula"
        d.mkdir(exist_ok=True)
        self.dir = d
        cert = ["nebula-cert"]
        subprocess.run([*cert, "ca", "-name", "bench-ca", "-duration", "48h",
                        "-out-crt", str(d / "ca.crt"), "-out-key", str(d / "ca.key")],
                       check=True, capture_output=True)
        for n, ip in (("a", self.A), ("b", self.B)):
            subprocess.run([*cert, "sign", "-name", n, "-ip", f"{ip}/24",
                            "-ca-crt", str(d / "ca.crt"), "-ca-key", str(d / "ca.key"),
                            "-out-crt", str(d / f"{n}.crt"), "-out-key", str(d / f"{n}.key")],
                           check=True, capture_output=True)
        for n, me, peer_ip, peer_under in (("a", UNDER_A, self.B, UNDER_B),
                                           ("b", UNDER_B, self.A, UNDER_A)):
            (d / f"{n}.yml").write_text(f"""pki:
  ca: {d}/ca.crt
  cert: {d}/{n}.crt
  key: {d}/{n}.key
static_host_map:
  "{peer_ip}": ["{peer_under}:{self.PORT}"]
lighthouse:
  am_lighthouse: false
  interval: 60
  hosts: []
listen:
  host: {me}
  port: {self.PORT}
punchy:
  punch: false
cipher: aes
tun:
  disabled: false
  dev: {lab.prefix}neb{n}
  drop_local_broadcast: false
  drop_multicast: false
  tx_queue: 500
  mtu: {TUN_MTU}
logging:
  level: info
  format: text
firewall:
  outbound:
    - port: any
      proto: any
      host: any
  inbound:
    - port: any
      proto: any
      host: any
""")

    def start(self, lab: Lab, ns_a: str, ns_b: str, tag: str) -> Up:
        logs = [f"nebula-a-{tag}", f"nebula-b-{tag}"]
        pa = lab.spawn(ns_a, ["nebula", "-config", str(self.dir / "a.yml")], logs[0])
        pb = lab.spawn(ns_b, ["nebula", "-config", str(self.dir / "b.yml")], logs[1])
        return Up([pa, pb], logs, self.B, f"{lab.prefix}neba")


class OpenVpn(Anchor):
    name = "openvpn"
    label = "openvpn (aes-256-gcm)"
    tools = ("openvpn", "openssl")
    PORT = 1194
    A, B = "100.64.4.1", "100.64.4.2"

    def prepare(self, lab: Lab, ns_a: str, ns_b: str) -> None:
        d = lab.dir / "openvpn"
        d.mkdir(exist_ok=True)
        self.dir = d
        self.fp: dict[str, str] = {}
        for n in ("a", "b"):
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                            "-subj", f"/CN=bench-{n}", "-keyout", str(d / f"{n}.key"),
                            "-out", str(d / f"{n}.crt")], check=True, capture_output=True)
            out = subprocess.run(["openssl", "x509", "-in", str(d / f"{n}.crt"), "-noout",
                                  "-fingerprint", "-sha256"], check=True, capture_output=True,
                                 text=True).stdout
            self.fp[n] = out.strip().split("=", 1)[1]

    def start(self, lab: Lab, ns_a: str, ns_b: str, tag: str) -> Up:
        d = self.dir
        common = ["openvpn", "--dev-type", "tun", "--proto", "udp", "--port", str(self.PORT),
                  "--dh", "none", "--disable-dco", "--data-ciphers", "AES-256-GCM",
                  "--tun-mtu", str(TUN_MTU), "--verb", "3"]
        logs = [f"openvpn-a-{tag}", f"openvpn-b-{tag}"]
        pa = lab.spawn(ns_a, [*common, "--dev", f"{lab.prefix}ovpa", "--local", UNDER_A,
                              "--remote", UNDER_B, str(self.PORT), "--ifconfig", self.A, self.B,
                              "--tls-server", "--cert", str(d / "a.crt"), "--key",
                              str(d / "a.key"), "--peer-fingerprint", self.fp["b"]], logs[0])
        pb = lab.spawn(ns_b, [*common, "--dev", f"{lab.prefix}ovpb", "--local", UNDER_B,
                              "--remote", UNDER_A, str(self.PORT), "--ifconfig", self.B, self.A,
                              "--tls-client", "--cert", str(d / "b.crt"), "--key",
                              str(d / "b.key"), "--peer-fingerprint", self.fp["a"]], logs[1])
        return Up([pa, pb], logs, self.B, f"{lab.prefix}ovpa")


def anchors(cipher: str) -> dict[str, Anchor]:
    plain = Shoal(cipher, offload=False, suffix="p")
    plain.name = "shoal-plain"
    return {a.name: a for a in (Shoal(cipher), WireguardGo(), Nebula(), OpenVpn(), plain)}
