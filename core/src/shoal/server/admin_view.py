"""What the admin page shows, built from the coordinator's state, and its HTML.

``snapshot`` reads the coordinator through the same attributes its own
operations use (networks, members, nodes, who is online and with what NAT) and
the paths nodes report with their heartbeats; it never touches the store.
``render`` turns a snapshot into the page's main section: plain, semantic,
escaped HTML (tables with headers and captions, state spelled out in words,
one small form per action so the page works without JavaScript too).
"""

from __future__ import annotations

import hashlib
from html import escape
from typing import Any

from shoal.server.coordinator import RequestError

#: Fixed notices after an action (the page shows only these, never text from the URL).
NOTICES = {
    "approved": "Member approved.",
    "evicted": "Member evicted.",
    "route_approved": "Route approved.",
    "not_member": "That node is not a member of the network.",
    "no_such_network": "There is no such network.",
    "full": "The network is full.",
    "invalid": "The server refused that action.",
    "ambiguous": "Several members have that name.",
    "not_owner": "The server refused that action.",
}


def snapshot(server: Any) -> dict[str, Any]:
    coord = server.coord
    sessions = server.sessions
    online = coord.online
    networks = []
    for netname in sorted(coord.networks):
        net = coord.networks[netname]
        members = coord.members.get(netname, {})
        try:  # gateway routes, listed with the owner's view
            routes = [i.model_dump() for i in coord.route_list(net.owner, netname)]
        except RequestError:
            routes = []
        rows = []
        for key, mem in sorted(members.items(), key=lambda kv: (kv[1].joined, kv[0])):
            node = coord.nodes.get(key)
            on = online.get(key)
            sess = sessions.get(key)
            paths = []
            if sess is not None:
                for peer_key, rep in sorted(sess.paths.items()):
                    if peer_key in members and peer_key in online and peer_key in coord.nodes:
                        paths.append({"peer": coord.nodes[peer_key].name, "path": rep.path,
                                      "transport": rep.transport, "rtt_ms": rep.rtt_ms})
            role = ("pending" if mem.status == "pending" else "owner" if net.owner == key
                    else "hub" if mem.hub else "member")
            rows.append({
                "name": node.name if node else "?", "public_key": key,
                "virtual_ip": node.virtual_ip if node else None,
                "role": role, "status": mem.status, "online": on is not None,
                "nat": on.nat.model_dump() if on is not None else None,
                "paths": paths,
                "routes": [r["prefix"] for r in routes if r["gateway"] == key and r["approved"]],
            })
        owner = coord.nodes.get(net.owner)
        networks.append({
            "name": net.name, "type": net.type, "join_mode": net.join_mode,
            "member_limit": net.member_limit, "owner": owner.name if owner else net.owner,
            "members": rows, "routes": routes,
        })
    return {"networks": networks, "nodes_online": len(online), "nodes": len(coord.nodes)}


def _id(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def _nat(nat: dict[str, Any] | None) -> str:
    if nat is None:
        return "—"
    if not nat.get("udp", True):
        return "UDP blocked (relay over TCP)"
    mapping, filtering = nat.get("mapping", "unknown"), nat.get("filtering", "unknown")
    if mapping == filtering == "unknown":
        text = "unknown"
    else:
        text = f"mapping {mapping}, filtering {filtering}"
    if nat.get("public_endpoint"):
        text += f" ({nat['public_endpoint']})"
    return escape(text)


def _paths(paths: list[dict[str, Any]]) -> str:
    if not paths:
        return "—"
    items = []
    for p in paths:
        extra = " ".join(x for x in (
            f"via {p['transport']}" if p.get("transport") else "",
            f"{p['rtt_ms']:.1f} ms" if p.get("rtt_ms") is not None else "") if x)
        items.append(f"<li>{escape(p['peer'])}: <span class=\"path-{escape(p['path'])}\">"
                     f"{escape(p['path'])}</span>{' ' + escape(extra) if extra else ''}</li>")
    return f"<ul class=\"paths\">{''.join(items)}</ul>"


def _action(csrf: str, op: str, label: str, network: str, member: str, name: str,
            confirm: str | None = None, field: str = "member") -> str:
    conf = f' data-confirm="{escape(confirm)}"' if confirm else ""
    return (f'<form method="post" action="/action"{conf}>'
            f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
            f'<input type="hidden" name="op" value="{op}">'
            f'<input type="hidden" name="network" value="{escape(network)}">'
            f'<input type="hidden" name="{field}" value="{escape(member)}">'
            f'<button type="submit" id="{op}-{_id(network, member)}">'
            f'{label} <span class="name">{escape(name)}</span></button></form>')


def _routes(csrf: str, net: dict[str, Any]) -> str:
    if not net["routes"]:
        return ""
    name = escape(net["name"])
    rows = []
    for r in net["routes"]:
        state = "approved" if r["approved"] else "waiting for approval"
        act = "—" if r["approved"] else _action(csrf, "route_approve", "Approve route",
                                                 net["name"], r["prefix"], r["prefix"],
                                                 field="prefix")
        rows.append(f'<tr data-route="{escape(r["prefix"])}" data-state="'
                    f'{"approved" if r["approved"] else "pending"}">'
                    f'<th scope="row">{escape(r["prefix"])}</th>'
                    f'<td>{escape(r.get("gateway_name") or r["gateway"])}</td><td>{state}</td>'
                    f'<td>{"yes" if r.get("masquerade") else "no"}</td>'
                    f'<td class="actions">{act}</td></tr>')
    return (f'<table class="routes"><caption>Gateway routes of {name}</caption><thead><tr>'
            '<th scope="col">LAN prefix</th><th scope="col">Gateway</th>'
            '<th scope="col">State</th><th scope="col">Masquerade</th>'
            f'<th scope="col">Actions</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


def render(snap: dict[str, Any], csrf: str) -> str:
    """The page's main section for ``snap``; ``csrf`` goes into each action form."""
    nets = len(snap["networks"])
    out = [(f'<p class="summary">{snap["nodes_online"]} of {snap["nodes"]} nodes online, '
            f'{nets} network{"" if nets == 1 else "s"}.</p>')]
    if not snap["networks"]:
        out.append("<p>No networks yet.</p>")
    for net in snap["networks"]:
        name = escape(net["name"])
        members = net["members"]
        active = sum(1 for r in members if r["status"] == "active")
        up = sum(1 for r in members if r["online"] and r["status"] == "active")
        hid = f"net-{_id(net['name'])}"
        out.append(
            f'<section class="network" aria-labelledby="{hid}">'
            f'<h2 id="{hid}">{name}</h2>'
            f'<p class="meta">{escape(net["type"])}, join {escape(net["join_mode"])}, '
            f'owner {escape(net["owner"])}, {active}/{net["member_limit"]} members, '
            f'{up} online</p>'
            f'<table><caption>Members of {name}</caption><thead><tr>'
            '<th scope="col">Node</th><th scope="col">Virtual IP</th><th scope="col">Role</th>'
            '<th scope="col">State</th><th scope="col">NAT</th><th scope="col">Paths</th>'
            '<th scope="col">Actions</th></tr></thead><tbody>')
        for r in members:
            state = "online" if r["online"] else "offline"
            acts = []
            if r["status"] == "pending":
                acts.append(_action(csrf, "approve", "Approve", net["name"], r["public_key"],
                                    r["name"]))
            if r["role"] != "owner":
                acts.append(_action(csrf, "evict", "Evict", net["name"], r["public_key"],
                                    r["name"], confirm=f"Evict {r['name']} from {net['name']}?"))
            route = "".join(f'<br><span class="route">LAN {escape(p)}</span>'
                            for p in r.get("routes", []))
            out.append(
                f'<tr data-node="{escape(r["name"])}" data-state="{state}">'
                f'<th scope="row">{escape(r["name"])}'
                f'<span class="key" title="public key">{escape(r["public_key"])}</span></th>'
                f'<td>{escape(r["virtual_ip"] or "—")}{route}</td>'
                f'<td>{escape(r["role"])}</td>'
                f'<td class="state state-{state}">{state}</td>'
                f'<td>{_nat(r["nat"])}</td><td>{_paths(r["paths"])}</td>'
                f'<td class="actions">{"".join(acts) or "—"}</td></tr>')
        out.append(f"</tbody></table>{_routes(csrf, net)}</section>")
    return "".join(out)
