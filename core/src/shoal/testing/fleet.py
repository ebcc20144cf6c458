"""Real Shoal processes in a lab: a coordination server (with relay) and nodes.

Used by end-to-end tests, the demo and benchmarks, so that every one of them
configures and starts Shoal the same way.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shoal.testing.netlab import SHOAL, Lab, wait_until

SERVER_IP, SERVER_IP2 = "203.0.113.10", "203.0.113.11"
CONTROL_PORT, RELAY_PORT = 7400, 3480


@dataclass
class ServerProc:
    ns: str
    config: Path
    key: str
    proc: subprocess.Popen[bytes]


@dataclass
class NodeProc:
    name: str
    ns: str
    config: Path
    proc: subprocess.Popen[bytes] | None = None

    def status(self, lab: Lab) -> dict[str, Any]:
        return lab.status(self.ns, self.config)

    def peer(self, lab: Lab, name: str) -> dict[str, Any] | None:
        return next((p for p in self.status(lab)["peers"] if p["name"] == name), None)


def server_config(lab: Lab, relay: bool = True, extra: str = "", discovery: bool = True
                  ) -> Path:
    relay_cfg = f'''plugins = ["relay"]
[plugin.relay]
listen_udp = "{SERVER_IP}:{RELAY_PORT}"
listen_tcp = "{SERVER_IP}:{RELAY_PORT}"
''' if relay else ""
    endpoints = (f'discovery = ["{SERVER_IP}:3478", "{SERVER_IP}:3479", "{SERVER_IP2}:3478", '
                 f'"{SERVER_IP2}:3479"]\n' if discovery else "")
    return lab.write("server.toml", f'''state_dir = "{lab.dir}/server"
listen = "{SERVER_IP}:{CONTROL_PORT}"
{endpoints}{extra}{relay_cfg}''')


def start_server(lab: Lab, ns: str, relay: bool = True, extra: str = "",
                 discovery: bool = True) -> ServerProc:
    cfg = server_config(lab, relay, extra, discovery)
    key = lab.shoal(ns, "server", "init", "-c", str(cfg)).stdout.strip().splitlines()[-1]
    proc = lab.spawn(ns, [SHOAL, "server", "run", "-c", str(cfg)], "server")
    wait_until(lambda: "listening" in lab.log_text("server"), 10, what="the server to listen")
    return ServerProc(ns, cfg, key, proc)


def node_config(lab: Lab, name: str, server_key: str, plugins: list[str],
                networks: list[tuple[str, str, bool]], extra: str = "",
                mode: str = "tun") -> Path:
    nets = "".join(f'''[[networks]]
name = "{n}"
password = "{pw}"
create = {str(create).lower()}
''' for n, pw, create in networks)
    return lab.write(f"{name}.toml", f'''name = "{name}"
state_dir = "{lab.dir}/{name}"
plugins = {plugins!r}
[server]
address = "{SERVER_IP}:{CONTROL_PORT}"
public_key = "{server_key}"
[interface]
mode = "{mode}"
[api]
socket = "{lab.dir}/{name}.sock"
[tunnel]
keepalive = 2
{extra}{nets}'''.replace("'", '"'))


def start_node(lab: Lab, ns: str, name: str, server: ServerProc,
               plugins: list[str] | None = None,
               networks: list[tuple[str, str, bool]] | None = None, extra: str = "",
               mode: str = "tun") -> NodeProc:
    cfg = node_config(lab, name, server.key, plugins or ["udp", "relay", "ice"],
                      networks if networks is not None else [("lan", "secret", False)], extra,
                      mode)
    node = NodeProc(name, ns, cfg)
    node.proc = lab.spawn(ns, [SHOAL, "up", "-c", str(cfg)], name)
    return node


def static_node_config(lab: Lab, name: str, vip: str, port: int = 41641, extra: str = "",
                       mtu: int = 1420, offload: bool = True) -> Path:
    """A node without a server (``[[peers]]`` added with ``add_static_peer``).

    ``offload=False`` turns off TUN offloads and UDP GSO/GRO (a node like one on an
    older kernel or an older Shoal).
    """
    off = "" if offload else "offload = false\n"
    return lab.write(f"{name}.toml", f'''name = "{name}"
state_dir = "{lab.dir / name}"
plugins = ["udp"]
[interface]
name = "shoal0"
address = "{vip}/10"
mtu = {mtu}
{off}[api]
socket = "{lab.dir / name}.sock"
{extra}
[plugin.udp]
port = {port}
{off}''')


def add_static_peer(config: Path, name: str, key: str, endpoint: str, vip: str) -> None:
    with config.open("a") as f:
        f.write(f'''
[[peers]]
name = "{name}"
public_key = "{key}"
endpoint = "{endpoint}"
virtual_ip = "{vip}"
''')


def wait_online(lab: Lab, node: NodeProc, timeout: float = 15) -> dict[str, Any]:
    return wait_until(lambda: (s := node.status(lab))["node"]["online"] and s, timeout,
                      what=f"{node.name} to log in")  # type: ignore[no-any-return]
