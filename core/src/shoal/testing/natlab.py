"""NAT labs: sites behind Linux routers that behave like the NAT types of RFC 4787.

Topology (every namespace belongs to one ``netlab.Lab``)::

    server 203.0.113.10 + .11 ──┐
                                 inet switch (203.0.113.0/24)
    router i  203.0.113.(100+i) ─┘
      │ 192.168.i.1/24
    host i    192.168.i.2/24  (default route via the router)

``internet(lab)`` builds the switch and the server host, and starts the
discovery service of ``shoal.server.discovery`` there on both addresses x
ports 3478/3479 (plus a TCP "what is my address" port on 203.0.113.10:3478).
``add_site(lab, inet, nat, index)`` adds one router + host; the router's
nftables table ``ip natlab`` implements the NAT type (see ``ruleset``):

``none``
    Plain routing: the host owns the public address 203.0.113.(50+i)/32 (the
    router answers ARP for it on the WAN, proxy ARP) and no rule filters.
``full-cone`` / ``address-restricted`` / ``port-restricted``
    Endpoint-independent mapping: UDP from inside port p always leaves as
    WAN:(p XOR k), an explicit ``snat``/``dnat`` pair, so the mapping never
    depends on the destination (k is non-zero, so the NAT visibly translates
    ports, and changes on ``rebind``). Filtering is a set of opened entries,
    refreshed by every outgoing packet for ``MAPPING_TIMEOUT`` seconds and
    checked in a ``raw`` prerouting chain, i.e. before conntrack: unsolicited
    packets are dropped there, so they never create conntrack entries that
    could make Linux choose another port. Keys: external port (endpoint-
    independent filtering), port . remote address (address-dependent),
    port . remote address . remote port (address-and-port-dependent).
``symmetric``
    ``snat ... fully-random``: every new conntrack flow (per destination
    address and port) gets a random external port; filtering as
    port-restricted.
``udp-blocked``
    Masquerade, and all forwarded UDP is dropped; TCP works.

``set_loss`` adds random loss on the router's forward path, ``rebind`` makes
the NAT pick new external ports for existing flows. ``classify`` is the RFC
5780 behaviour discovery over one UDP socket (no namespace knowledge), and
``classify_site`` runs it inside a site's host.

``python -m shoal.testing.natlab`` (root) builds all six sites and prints
their classification; the subcommands ``serve``, ``probe``, ``tcp-probe``,
``burst``, ``punch`` and ``inject`` are the helpers the lab runs inside namespaces.

Caveats: an endpoint-independent mapping here is a fixed function of the inside
port (it never expires; only the filter entries do, and ``rebind`` changes it);
there is no hairpinning; the symmetric NAT's ports are random, so two
destinations share one with probability ~1/64000.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from shoal import stun
from shoal.server import discovery
from shoal.testing.netlab import Lab, can_run, wait_until

NAT_TYPES = ("none", "full-cone", "address-restricted", "port-restricted", "symmetric",
             "udp-blocked")
SERVER_IPS = ("203.0.113.10", "203.0.113.11")
DISCOVERY_PORTS = (3478, 3479)
TCP_PORT = 3478
MAPPING_TIMEOUT = 120  # seconds an opened filter entry lives after the last outgoing packet
TABLE = "natlab"
LOSS_TABLE = "natlab_loss"

# RFC 4787 / RFC 5780 behaviour names (mapping and filtering use the same words)
EI, AD, APD = "endpoint-independent", "address-dependent", "address-and-port-dependent"


# ====================================================================== topology

@dataclass
class Internet:
    switch_ns: str
    server_ns: str
    server_if: str
    server_ips: tuple[str, str] = SERVER_IPS
    ports: tuple[int, int] = DISCOVERY_PORTS
    tcp_port: int = TCP_PORT

    @property
    def endpoints(self) -> list[str]:
        """The discovery endpoints in RFC 5780 order: A1:P1, A1:P2, A2:P1, A2:P2."""
        return [f"{ip}:{port}" for ip in self.server_ips for port in self.ports]


@dataclass
class Site:
    nat: str
    index: int
    host_ns: str
    router_ns: str
    wan_ip: str            # the site's public address: router WAN, or the host itself for "none"
    lan_ip: str            # the host's LAN address 192.168.i.2
    host_ip: str           # the source address the host uses towards the internet
    router_wan_ip: str
    router_lan_ip: str
    wan_if: str            # router interfaces
    lan_if: str
    host_if: str
    generation: int = 0    # bumped by rebind
    loss: int = 0          # percent, see set_loss

    @property
    def port_key(self) -> int:
        """The XOR applied to inside ports by endpoint-independent mappings (never 0)."""
        return (((self.index * 5 + self.generation * 3) % 31) + 1) << 8


def internet(lab: Lab, serve: bool = True) -> Internet:
    """The 'internet' switch and a server host with 203.0.113.10 and .11 (discovery running)."""
    sw = lab.switch("inet")
    srv = lab.ns("srv")
    ifname = lab.attach(sw, srv, f"{SERVER_IPS[0]}/24")
    lab.sh(srv, f"ip addr add {SERVER_IPS[1]}/24 dev {ifname}")
    inet = Internet(switch_ns=sw, server_ns=srv, server_if=ifname)
    if serve:
        start_server(lab, inet)
    return inet


def start_server(lab: Lab, inet: Internet, timeout: float = 10) -> subprocess.Popen[bytes]:
    """Start the discovery service (and the TCP address echo) on the server host."""
    log = f"discovery-{inet.server_ns}"
    p = lab.spawn(inet.server_ns, [sys.executable, "-m", "shoal.testing.natlab", "serve",
                                   "--tcp", f"{inet.server_ips[0]}:{inet.tcp_port}",
                                   *inet.endpoints], log)

    def ready() -> bool:
        if p.poll() is not None:
            raise RuntimeError(f"discovery server exited: {lab.log_text(log)}")
        return "READY" in lab.log_text(log)

    wait_until(ready, timeout, 0.05, "discovery server")
    return p


def add_site(lab: Lab, inet: Internet, nat: str, index: int) -> Site:
    """A router (NAT type ``nat``) on the internet switch and one host behind it."""
    if nat not in NAT_TYPES:
        raise ValueError(f"unknown NAT type {nat!r}; one of {', '.join(NAT_TYPES)}")
    if not 1 <= index <= 49:
        raise ValueError("site index must be in 1..49")
    router = lab.ns(f"r{index}")
    host = lab.ns(f"h{index}")
    router_wan = f"203.0.113.{100 + index}"
    router_lan, lan_ip = f"192.168.{index}.1", f"192.168.{index}.2"
    wan_if = lab.attach(inet.switch_ns, router, f"{router_wan}/24")
    lan_if, host_if = lab.link(router, f"{router_lan}/24", host, f"{lan_ip}/24")
    lab.sh(router, "sysctl -qw net.ipv4.ip_forward=1")
    if nat == "none":
        public = f"203.0.113.{50 + index}"
        lab.sh(host, f"ip addr add {public}/32 dev {host_if}"
                     f" && ip route add default via {router_lan} src {public}")
        lab.sh(router, f"ip route add {public}/32 via {lan_ip}"
                       f" && sysctl -qw net.ipv4.conf.{wan_if}.proxy_arp=1")
        wan_ip, host_ip = public, public
    else:
        lab.sh(host, f"ip route add default via {router_lan}")
        wan_ip, host_ip = router_wan, lan_ip
    site = Site(nat=nat, index=index, host_ns=host, router_ns=router, wan_ip=wan_ip,
                lan_ip=lan_ip, host_ip=host_ip, router_wan_ip=router_wan,
                router_lan_ip=router_lan, wan_if=wan_if, lan_if=lan_if, host_if=host_if)
    _load(lab, site, TABLE, ruleset(site))
    return site


def ruleset(site: Site) -> str:
    """The router's nftables table for ``site.nat`` (pure; depends on the generation)."""
    wan, wip, lip = site.wan_if, site.router_wan_ip, site.lan_ip
    k = site.port_key
    zone = site.generation + 1
    out: list[str] = [f"table ip {TABLE} {{"]
    if site.nat == "none":
        out.append("  # plain routing: no translation, no filtering")
    elif site.nat == "udp-blocked":
        out += [
            "  chain forward {",
            "    type filter hook forward priority filter; policy accept;",
            "    meta l4proto udp counter drop",
            "  }",
            "  chain nat_post {",
            "    type nat hook postrouting priority srcnat; policy accept;",
            f'    oifname "{wan}" masquerade',
            "  }",
        ]
    else:
        key_type, key_in, key_out = {
            "full-cone": ("inet_service", "udp dport", "udp sport"),
            "address-restricted": ("inet_service . ipv4_addr", "udp dport . ip saddr",
                                   "udp sport . ip daddr"),
        }.get(site.nat, ("inet_service . ipv4_addr . inet_service",
                         "udp dport . ip saddr . udp sport", "udp sport . ip daddr . udp dport"))
        if site.nat == "symmetric":
            udp_snat = f"snat to {wip} fully-random"
            dnat: list[str] = []
        else:
            udp_snat = f"snat to {wip} : udp sport ^ {k:#06x}"
            dnat = [
                # an opened mapping accepts a new remote endpoint (conntrack has no flow yet)
                "  chain nat_pre {",
                "    type nat hook prerouting priority dstnat; policy accept;",
                f'    iifname "{wan}" ip daddr {wip} meta l4proto udp'
                f" dnat to {lip} : udp dport ^ {k:#06x}",
                "  }",
            ]
        out += [
            "  set open {",
            f"    type {key_type}; flags timeout; timeout {MAPPING_TIMEOUT}s;",
            "  }",
            # before conntrack (priority raw): a dropped unsolicited packet leaves no
            # conntrack entry behind; the zone is what rebind changes to forget all flows
            "  chain raw_pre {",
            "    type filter hook prerouting priority raw; policy accept;",
            f"    ct zone set {zone}",
            f'    iifname "{wan}" ip daddr {wip} {key_in} @open accept',
            f'    iifname "{wan}" ip daddr {wip} meta l4proto udp counter drop',
            "  }",
            *dnat,
            "  chain nat_post {",
            "    type nat hook postrouting priority srcnat; policy accept;",
            f'    oifname "{wan}" meta l4proto udp {udp_snat}',
            f'    oifname "{wan}" masquerade',
            "  }",
            # after source NAT: the key holds the external port
            "  chain track {",
            "    type filter hook postrouting priority 300; policy accept;",
            f'    oifname "{wan}" ip saddr {wip} meta l4proto udp'
            f" update @open {{ {key_out} timeout {MAPPING_TIMEOUT}s }}",
            "  }",
        ]
    out.append("}")
    return "\n".join(out) + "\n"


def loss_ruleset(percent: int) -> str:
    match = "" if percent >= 100 else f"numgen random mod 100 < {percent} "
    return (f"table ip {LOSS_TABLE} {{\n"
            "  chain forward {\n"
            "    type filter hook forward priority filter - 10; policy accept;\n"
            f"    {match}counter drop\n"
            "  }\n"
            "}\n")


def _load(lab: Lab, site: Site, table: str, text: str | None) -> None:
    """Atomically replace (or, with ``text=None``, remove) one table on the router."""
    body = f"table ip {table}\ndelete table ip {table}\n" + (text or "")
    path = lab.write(f"{site.router_ns}-{table}-{time.monotonic_ns()}.nft", body)
    lab.sh(site.router_ns, f"nft -f {path}")


def set_loss(lab: Lab, site: Site, percent: int) -> None:
    """Drop ``percent``% of the packets the router forwards (both directions); 0 removes it."""
    if not 0 <= percent <= 100:
        raise ValueError("loss is a percentage")
    _load(lab, site, LOSS_TABLE, loss_ruleset(percent) if percent else None)
    site.loss = percent


def rebind(lab: Lab, site: Site) -> None:
    """Make the NAT forget every flow and mapping, so existing flows get new external ports.

    The table is replaced in one transaction with a new conntrack zone (old flows are
    no longer found; they expire unseen), a new port key, and empty filter sets.
    No-op for "none" and "udp-blocked" beyond the reload.
    """
    site.generation += 1
    _load(lab, site, TABLE, ruleset(site))


def router_rules(lab: Lab, site: Site) -> str:
    return lab.sh(site.router_ns, "nft list ruleset").stdout


# ====================================================================== probe

@dataclass(frozen=True)
class Answer:
    mapped: tuple[str, int]        # our address as the server saw it
    source: tuple[str, int]        # where the answer came from
    other: tuple[str, int] | None  # OTHER-ADDRESS the server announced


@dataclass(frozen=True)
class Classification:
    local: tuple[str, int]
    mapped: tuple[str, int] | None          # None: no UDP answer at all
    mapping: str | None = None              # EI / AD / APD, None if undetermined
    filtering: str | None = None
    observed: dict[str, tuple[str, int]] = field(default_factory=dict)  # endpoint -> mapped

    @property
    def udp_blocked(self) -> bool:
        return self.mapped is None

    @property
    def behind_nat(self) -> bool:
        return self.mapped is not None and self.mapped != self.local

    @property
    def nat_type(self) -> str | None:
        """The best-matching label of NAT_TYPES (None for combinations they do not name)."""
        if self.mapped is None:
            return "udp-blocked"
        if not self.behind_nat:
            return "none"
        if self.mapping == EI:
            return {EI: "full-cone", AD: "address-restricted",
                    APD: "port-restricted"}.get(self.filtering or "")
        if self.mapping in (AD, APD):
            return "symmetric"
        return None

    def to_json(self) -> str:
        return json.dumps({"local": self.local, "mapped": self.mapped, "mapping": self.mapping,
                           "filtering": self.filtering, "observed": self.observed})

    @classmethod
    def from_json(cls, text: str) -> Classification:
        d = json.loads(text)

        def addr(v: list[Any]) -> tuple[str, int]:
            return str(v[0]), int(v[1])

        return cls(local=addr(d["local"]), mapped=addr(d["mapped"]) if d["mapped"] else None,
                   mapping=d["mapping"], filtering=d["filtering"],
                   observed={k: addr(v) for k, v in d["observed"].items()})


def binding_request(sock: socket.socket, server: tuple[str, int], flags: int = 0,
                    tries: int = 3, timeout: float = 0.3) -> Answer | None:
    """One STUN Binding exchange: sent up to ``tries`` times, ``timeout`` seconds apart.

    ``flags`` are CHANGE-REQUEST bits. Datagrams that are not the answer to this
    request (late answers to earlier ones, noise) are skipped. Leaves the socket's
    timeout changed; ``classify`` restores it.
    """
    txid = os.urandom(12)
    req = stun.encode(stun.binding_request(flags, txid))
    for _ in range(tries):
        sock.sendto(req, server)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data, src = sock.recvfrom(2048)
            except (TimeoutError, BlockingIOError):
                break
            except OSError:  # e.g. ICMP errors reported on connected/RECVERR sockets
                continue
            try:
                msg = stun.decode(data)
                if msg.transaction_id != txid or msg.message_class != stun.Class.RESPONSE:
                    continue
                b = stun.BindingAnswer.from_message(msg)
            except stun.StunError:
                continue
            return Answer(mapped=b.mapped, source=(src[0], src[1]), other=b.other)
    return None


def local_address(sock: socket.socket, towards: tuple[str, int]) -> tuple[str, int]:
    """The socket's own address; for a wildcard bind, the source address routing picks."""
    ip, port = sock.getsockname()[:2]
    if ip in ("0.0.0.0", ""):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tmp:
            tmp.connect(towards)  # route lookup only: nothing is sent
            ip = tmp.getsockname()[0]
    return ip, port


def classify(sock: socket.socket, a1: str, a2: str, p1: int = DISCOVERY_PORTS[0],
             p2: int = DISCOVERY_PORTS[1], tries: int = 3, timeout: float = 0.3
             ) -> Classification:
    """RFC 5780 mapping and filtering behaviour discovery over one UDP socket.

    Order matters with a single socket: the filtering tests run right after test I,
    while the mapping has only talked to A1:P1 (the mapping tests contact A2, which
    would open an address-dependent filter to the CHANGE_IP answer).

    1. test I   A1:P1                        -> M1 (no answer: UDP blocked)
    2. filter   A1:P1 CHANGE_IP|CHANGE_PORT  answered from A2:P2 -> endpoint-independent
                A1:P1 CHANGE_PORT            answered from A1:P2 -> address-dependent
                                             else address-and-port-dependent
    3. mapping  A2:P1 -> M2: M2 == M1 -> endpoint-independent
                A2:P2 -> M3: M3 == M2 -> address-dependent, else address-and-port-dependent
    """
    saved = sock.gettimeout()
    try:
        r1 = binding_request(sock, (a1, p1), 0, tries, timeout)
        local = local_address(sock, (a1, p1))
        if r1 is None:
            return Classification(local=local, mapped=None)
        observed = {f"{a1}:{p1}": r1.mapped}

        both = binding_request(sock, (a1, p1), stun.CHANGE_IP | stun.CHANGE_PORT,
                               tries, timeout)
        if both is not None and both.source == (a2, p2):
            filtering = EI
        else:
            port = binding_request(sock, (a1, p1), stun.CHANGE_PORT, tries, timeout)
            filtering = AD if port is not None and port.source == (a1, p2) else APD

        mapping: str | None = None
        r2 = binding_request(sock, (a2, p1), 0, tries, timeout)
        if r2 is not None:
            observed[f"{a2}:{p1}"] = r2.mapped
            if r2.mapped == r1.mapped:
                mapping = EI
            else:
                r3 = binding_request(sock, (a2, p2), 0, tries, timeout)
                if r3 is not None:
                    observed[f"{a2}:{p2}"] = r3.mapped
                    mapping = AD if r3.mapped == r2.mapped else APD
        return Classification(local=local, mapped=r1.mapped, mapping=mapping,
                              filtering=filtering, observed=observed)
    finally:
        sock.settimeout(saved)


def burst(sock: socket.socket, server: tuple[str, int], count: int = 100,
          wait: float = 0.5) -> int:
    """Send ``count`` requests at once; how many were answered within ``wait`` seconds."""
    pending = {os.urandom(12) for _ in range(count)}
    for txid in pending:
        sock.sendto(stun.encode(stun.binding_request(0, txid)), server)
    answered = 0
    deadline = time.monotonic() + wait
    while pending and (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(2048)
        except (TimeoutError, BlockingIOError):
            break
        try:
            tid = stun.decode(data).transaction_id
        except stun.StunError:
            continue
        if tid in pending:
            pending.discard(tid)
            answered += 1
    return answered


# -------------------------------------------------------- run inside a site's host

def _run_in(ns: str, *args: str, timeout: float = 30) -> str:
    r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "shoal.testing.natlab",
                        *args], capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"[{ns}] natlab {' '.join(args)} failed: {r.stderr.strip()}")
    return r.stdout


def classify_site(site: Site, inet: Internet, port: int = 0, tries: int = 3,
                  timeout: float = 0.3) -> Classification:
    """``classify`` from a fresh socket (bound to ``port``, 0 = ephemeral) in the site's host."""
    return Classification.from_json(_run_in(
        site.host_ns, "probe", "--port", str(port), "--tries", str(tries),
        "--timeout", str(timeout), inet.server_ips[0], inet.server_ips[1],
        str(inet.ports[0]), str(inet.ports[1])))


def mapped_address(site: Site, inet: Internet, port: int = 0, tries: int = 3,
                   timeout: float = 0.3, server: tuple[str, int] | None = None
                   ) -> tuple[str, int] | None:
    """Test I only (to A1:P1, or ``server``): the host's address as the server sees it.

    None: no answer.
    """
    ip, p = server or (inet.server_ips[0], inet.ports[0])
    out = _run_in(site.host_ns, "probe", "--test1", "--port", str(port), "--tries", str(tries),
                  "--timeout", str(timeout), ip, inet.server_ips[1], str(p), str(inet.ports[1]))
    return Classification.from_json(out).mapped


def punch(site: Site, port: int, peer: tuple[str, int], duration: float = 1.5,
          interval: float = 0.1) -> int:
    """From the site's host, UDP port ``port``: send to ``peer`` every ``interval`` seconds
    for ``duration`` seconds; the number of datagrams received from ``peer``.

    Run two at once (one per site, e.g. in threads) for a simultaneous hole punch.
    """
    return int(_run_in(site.host_ns, "punch", "--port", str(port), "--duration", str(duration),
                       "--interval", str(interval), f"{peer[0]}:{peer[1]}"))


def inject(ns: str, src: tuple[str, int], dst: tuple[str, int], payload: bytes = b"x",
           count: int = 1) -> None:
    """Send UDP datagrams from ``src`` (an address of ``ns``; the port may be one a
    server holds: a raw socket writes the header) to ``dst``, from namespace ``ns``.

    Unsolicited inbound packets, e.g. a peer punching towards a mapping first.
    """
    _run_in(ns, "inject", "--count", str(count), "--payload", payload.hex(),
            f"{src[0]}:{src[1]}", f"{dst[0]}:{dst[1]}")


def tcp_probe(site: Site, inet: Internet, timeout: float = 3) -> tuple[str, int] | None:
    """Connect over TCP to the server from the site's host; the address the server saw."""
    out = _run_in(site.host_ns, "tcp-probe", "--timeout", str(timeout),
                  f"{inet.server_ips[0]}:{inet.tcp_port}").strip()
    if not out:
        return None
    ip, port = out.rsplit(":", 1)
    return ip, int(port)


def burst_site(site: Site, inet: Internet, count: int = 100, wait: float = 0.5) -> int:
    return int(_run_in(site.host_ns, "burst", "--count", str(count), "--wait", str(wait),
                       f"{inet.server_ips[0]}:{inet.ports[0]}"))


# ====================================================================== CLI

def _endpoint(value: str) -> tuple[str, int]:
    host, port = value.rsplit(":", 1)
    return host, int(port)


async def _serve(endpoints: list[str], tcp: str | None) -> None:
    await discovery.serve(endpoints, rate=1e6)  # bursts are part of the lab's tests
    if tcp:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer = writer.get_extra_info("peername")
            writer.write(f"{peer[0]}:{peer[1]}\n".encode())
            await writer.drain()
            writer.close()

        host, port = _endpoint(tcp)
        await asyncio.start_server(echo, host, port)
    print("READY", flush=True)
    await asyncio.Event().wait()


def _demo() -> int:
    reason = can_run()
    if reason:
        print(f"cannot run the NAT lab: {reason}", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    with Lab("nat") as lab:
        inet = internet(lab)
        sites = [add_site(lab, inet, nat, i) for i, nat in enumerate(NAT_TYPES, 1)]
        built = time.monotonic()
        with ThreadPoolExecutor(len(sites)) as pool:
            results = list(pool.map(lambda s: classify_site(s, inet), sites))
        print(f"{'site':<20} {'public':<16} {'mapped':<22} {'mapping':<27} "
              f"{'filtering':<27} classified as")
        for s, c in zip(sites, results):
            mapped = f"{c.mapped[0]}:{c.mapped[1]}" if c.mapped else "-"
            print(f"{s.nat:<20} {s.wan_ip:<16} {mapped:<22} {c.mapping or '-':<27} "
                  f"{c.filtering or '-':<27} {c.nat_type}")
        print(f"built in {built - t0:.1f}s, classified in {time.monotonic() - built:.1f}s")
        return 0 if all(c.nat_type == s.nat for s, c in zip(sites, results)) else 1


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m shoal.testing.natlab",
                                 description="NAT lab (default: build all six sites and "
                                             "print their classification; needs root)")
    sub = ap.add_subparsers(dest="cmd")
    s = sub.add_parser("serve", help="run the discovery service on ENDPOINTs")
    s.add_argument("endpoints", nargs="+")
    s.add_argument("--tcp", help="also answer TCP connections on this endpoint")
    p = sub.add_parser("probe", help="classify the NAT in front of this namespace (JSON)")
    p.add_argument("a1")
    p.add_argument("a2")
    p.add_argument("p1", type=int)
    p.add_argument("p2", type=int)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--tries", type=int, default=3)
    p.add_argument("--timeout", type=float, default=0.3)
    p.add_argument("--test1", action="store_true", help="only test I (mapped address)")
    t = sub.add_parser("tcp-probe", help="print the address a TCP server saw (empty: failed)")
    t.add_argument("endpoint")
    t.add_argument("--timeout", type=float, default=3)
    b = sub.add_parser("burst", help="send COUNT requests at once, print how many were answered")
    b.add_argument("endpoint")
    b.add_argument("--count", type=int, default=100)
    b.add_argument("--wait", type=float, default=0.5)
    i = sub.add_parser("inject", help="send raw UDP datagrams from SRC (IP:PORT) to DST")
    i.add_argument("src")
    i.add_argument("dst")
    i.add_argument("--count", type=int, default=1)
    i.add_argument("--payload", default="78", help="hex")
    h = sub.add_parser("punch", help="send to PEER periodically, print datagrams from PEER")
    h.add_argument("peer")
    h.add_argument("--port", type=int, required=True)
    h.add_argument("--duration", type=float, default=1.5)
    h.add_argument("--interval", type=float, default=0.1)
    args = ap.parse_args(argv)

    if args.cmd == "serve":
        asyncio.run(_serve(args.endpoints, args.tcp))
        return 0
    if args.cmd == "probe":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("0.0.0.0", args.port))
            if args.test1:
                a = binding_request(sock, (args.a1, args.p1), 0, args.tries, args.timeout)
                c = Classification(local=local_address(sock, (args.a1, args.p1)),
                                   mapped=a.mapped if a else None)
            else:
                c = classify(sock, args.a1, args.a2, args.p1, args.p2, args.tries, args.timeout)
        print(c.to_json())
        return 0
    if args.cmd == "tcp-probe":
        try:
            with socket.create_connection(_endpoint(args.endpoint), timeout=args.timeout) as c:
                c.settimeout(args.timeout)
                print(c.makefile().readline().strip())
        except OSError:
            print("")
        return 0
    if args.cmd == "burst":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            print(burst(sock, _endpoint(args.endpoint), args.count, args.wait))
        return 0
    if args.cmd == "punch":
        peer = _endpoint(args.peer)
        got = 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("0.0.0.0", args.port))
            end = time.monotonic() + args.duration
            next_send = 0.0
            while (now := time.monotonic()) < end:
                if now >= next_send:
                    sock.sendto(b"punch", peer)
                    next_send = now + args.interval
                sock.settimeout(max(0.001, min(next_send, end) - now))
                try:
                    _, src = sock.recvfrom(2048)
                except (TimeoutError, BlockingIOError):
                    continue
                got += src[:2] == peer
        print(got)
        return 0
    if args.cmd == "inject":
        (sip, sport), (dip, dport) = _endpoint(args.src), _endpoint(args.dst)
        payload = bytes.fromhex(args.payload)
        with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP) as raw:
            raw.bind((sip, 0))  # the kernel writes the IP header; checksum 0 = none (UDP/IPv4)
            dgram = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
            for _ in range(args.count):
                raw.sendto(dgram, (dip, 0))
        return 0
    return _demo()


if __name__ == "__main__":
    sys.exit(main())
