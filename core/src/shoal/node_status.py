"""``shoal status --json`` of a running node: rendering only (contract in ARCHITECTURE §6).

Plugins extend it through ``NodePlugin.status``; keys the contract defines are
never changed or removed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shoal import __version__, wire
from shoal.addressing import ipv6_for, mac_for_key, mac_str
from shoal.peer import Peer
from shoal.transport import endpoint_text

if TYPE_CHECKING:
    from shoal.node import Node


def path_word(peer: Peer) -> str:
    """``status --json`` ``path``: ``direct``, ``relay`` or ``none``."""
    return "none" if peer.path is None else peer.path.kind.value


def render_status(node: Node) -> dict[str, Any]:
    eng = node.engine
    assert eng is not None and node.keypair is not None
    now = eng.clock()
    peers = []
    for p in eng.peers.values():
        info = node.server_peers.get(p.public_key)
        online = p.online(now)
        peers.append({
            "name": p.name,
            "public_key": p.public_key_b64,
            "virtual_ip": p.virtual_ip,
            "online": online,
            "state": p.state.value,
            "networks": info.networks if info else [],
            "path": path_word(p) if online else "none",
            "transport": p.via.name if online and p.via is not None else None,
            "endpoint": endpoint_text(p.endpoint),
            "rtt_ms": None if p.rtt_ms is None else round(p.rtt_ms, 2),
            "paths": node.paths.status(p),
            "rx_bytes": p.stats.rx_bytes,
            "tx_bytes": p.stats.tx_bytes,
            "rx_packets": p.stats.rx_packets,
            "tx_packets": p.stats.tx_packets,
            "handshakes": p.stats.handshakes,
            "cipher": wire.CIPHER_NAMES[p.current.cipher] if p.current else None,
            "last_handshake_s": None if p.current is None else round(now - p.current.created, 1),
        })
    for info in node.offline_peers.values():
        peers.append({"name": info.name, "public_key": info.public_key,
                      "virtual_ip": info.virtual_ip, "online": False,
                      "networks": info.networks, "path": "none", "transport": None,
                      "endpoint": None, "rtt_ms": None, "rx_bytes": 0, "tx_bytes": 0})
    ctl = node.control.state if node.control else None
    # Online members as this node sees them: itself plus the peers it has a live
    # tunnel to through that network (presence is not re-pushed per network).
    online_in: dict[str, int] = {}
    for p in peers:
        if p["online"]:
            for net in p["networks"]:
                online_in[net] = online_in.get(net, 0) + 1
    networks = [{"name": n.name, "role": n.role, "type": n.type, "members": n.members,
                 "online": (online_in.get(n.name, 0) + (1 if ctl and ctl.online else 0))
                 if n.role != "pending" else 0,
                 "join_mode": n.join_mode, "member_limit": n.member_limit,
                 "pending": n.pending}
                for n in (ctl.networks if ctl else [])]
    status = {
        "node": {
            "name": node.cfg.name,
            "version": __version__,
            "public_key": node.keypair.public_b64,
            "virtual_ip": node.virtual_ip,
            "online": ctl.online if ctl else True,
            "server": node.control.server if node.control else None,
            "server_error": ctl.last_error if ctl else None,
            "nat": {"mapping": "unknown", "filtering": "unknown", "public_endpoint": None},
            "interface": node.tun.name if node.tun else None,
            "mode": node.cfg.interface.mode,
            "mac": mac_str(mac_for_key(node.keypair.public)),
            "virtual_ip6": ipv6_for(node.virtual_ip) if node.virtual_ip else None,
            "listen": eng.transport.local_endpoints(),
            "drops": eng.drop_counts(),
            "offloads": eng.offload_status(node.tun),
            "transports": [{"plugin": node.plugin_of(t), "name": t.name,
                            "kind": t.kind.value, "delivery": t.delivery.value,
                            "readiness": t.readiness.value, **t.describe()}
                           for t in node.transports],
        },
        "networks": networks,
        "peers": peers,
        "routes": node.routing.status() if node.routing else [],
    }
    node.for_each_plugin("status", lambda p: p.status(status))
    return status

