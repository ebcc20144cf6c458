"""The ``shoal`` command line (ARCHITECTURE §6, CLI contract).

Every failure the user can fix is one line on stderr and a non-zero exit.
Plugins add subcommands through ``shoal_cli_register_commands``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from typing import Any

from shoal import __version__, api, memory
from shoal.config import load_node_config
from shoal.errors import ShoalError
from shoal.plugins import list_plugins, load_plugins

SERVER_KEY_FILE = "server.key"
EXIT_ERROR = 1
EXIT_USAGE = 2


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _socket_path(args: argparse.Namespace) -> str:
    if getattr(args, "socket", None):
        return str(args.socket)
    if getattr(args, "config", None):
        return load_node_config(args.config).api_socket
    env = os.environ.get("SHOAL_SOCKET")
    if env:
        return env
    raise ShoalError("which node? give -c node.toml or --socket PATH")


# ----------------------------------------------------------------- commands
def cmd_up(args: argparse.Namespace) -> int:
    from shoal.node import Node

    from shoal.service import progress

    cfg = load_node_config(args.config)
    # In a terminal, progress lines replace the routine info log (warnings still show);
    # under systemd or redirected, the log stays as configured and no progress is shown.
    show = not args.no_progress and progress.wanted(sys.stderr)
    level = cfg.log_level
    if show and level == "info":
        level = "warning"
    _setup_logging("debug" if args.verbose else level)
    node = Node(cfg, config_path=args.config)

    async def show_progress() -> None:
        await node.ready.wait()
        await progress.watch(node.status, cfg.server is not None)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        shown = asyncio.create_task(show_progress()) if show else None
        try:
            await node.run(stop)
        finally:
            if shown is not None:
                shown.cancel()

    run_node_loop(main())
    return 0


def cmd_service_install(args: argparse.Namespace) -> int:
    from shoal.service import units

    try:
        written = units.install(args.unit_dir, args.shoal, args.config_dir,
                                reload=not args.no_reload)
    except (OSError, ValueError) as e:
        raise ShoalError(f"cannot install the units into {args.unit_dir}: "
                         f"{getattr(e, 'strerror', None) or e}") from None
    for p in written:
        print(f"wrote {p}")
    print(f"configs go in {args.config_dir}: NAME.toml per node, server.toml, relay.toml; then")
    print("  systemctl enable --now shoal@NAME      # a node")
    print("  systemctl enable --now shoal-server    # after 'shoal server init -c "
          f"{args.config_dir}/server.toml'")
    print("  systemctl enable --now shoal-relay")
    return 0


def run_node_loop(coro: Any) -> None:
    """Run a node's event loop: uvloop where it is installed, asyncio's own otherwise.

    The data plane is a set of reader callbacks; uvloop dispatches them from C,
    which takes about a quarter of an idle round trip's user-space time off
    (bench/latency.py measures both). ``SHOAL_EVENT_LOOP=asyncio`` forces asyncio's own.
    """
    try:
        if os.environ.get("SHOAL_EVENT_LOOP") == "asyncio":
            raise ImportError("asyncio's own loop asked for")
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return
    uvloop.run(coro)


def cmd_key_public(args: argparse.Namespace) -> int:
    from shoal.node import load_keypair

    cfg = load_node_config(args.config)
    kp = load_keypair(cfg, load_plugins(cfg.plugins))
    print(kp.public_b64)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    st = api.call(_socket_path(args), "status")
    if args.json:
        print(json.dumps(st, indent=2))
        return 0
    n = st["node"]
    print(f"node     {n['name']}  {n['virtual_ip']}  key {n['public_key']}")
    print(f"listen   {', '.join(n.get('listen') or []) or '-'}  interface {n.get('interface')}")
    nat = n.get("nat") or {}
    if nat.get("udp", True):
        print(f"nat      mapping {nat.get('mapping')}, filtering {nat.get('filtering')}, "
              f"public {nat.get('public_endpoint') or '-'}")
    else:
        print("nat      UDP is blocked: peers are reached through the relay over TCP")
    if n.get("dns"):
        print(f"dns      {n['dns']}  (<node>.<network>.shoal)")
    if n.get("server"):
        state = "online" if n.get("online") else f"offline ({n.get('server_error') or 'connecting'})"
        print(f"server   {n['server']} {state}")
    drops = {k: v for k, v in (n.get("drops") or {}).items() if v}
    if drops:
        print("dropped  " + ", ".join(f"{k} {v}" for k, v in drops.items()))
    for net in st.get("networks", []):
        print(f"network  {net['name']}  {net.get('type')}  role {net.get('role')}  "
              f"members {net.get('members')}")
    for r in st.get("routes", []):
        masq = ", masquerade" if r.get("masquerade") else ""
        print(f"route    {r['prefix']}  via {r['gateway']}  ({r['network']}{masq})  {r['state']}"
              + (f": {r['reason']}" if r.get("reason") else ""))
    if st["peers"]:
        print()
        rows = [("PEER", "VIRTUAL IP", "STATE", "PATH", "VIA", "ENDPOINT", "RTT", "RX", "TX")]
        for p in st["peers"]:
            rtt = f"{p['rtt_ms']:.1f}ms" if p.get("rtt_ms") is not None else "-"
            rows.append((p["name"], p["virtual_ip"], "online" if p["online"] else "offline",
                         p["path"], p.get("transport") or "-", p.get("endpoint") or "-", rtt,
                         _size(p["rx_bytes"]), _size(p["tx_bytes"])))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def cmd_server_init(args: argparse.Namespace) -> int:
    from shoal import identity
    from shoal.config import load_server_config

    cfg = load_server_config(args.config)
    _private_files()
    kp = identity.load_or_create(cfg.state_dir, create=True, key_file=SERVER_KEY_FILE)
    _migrate(cfg)
    print(f"server state in {cfg.state_dir}; nodes pin this public key:")
    print(kp.public_b64)
    return 0


def _migrate(cfg: Any) -> list[int]:
    """Open the configured database and apply pending migrations; returns their numbers."""
    from shoal.server.store import is_postgres, sqlite_path

    if is_postgres(cfg.database):
        from shoal.server.pg_store import connect, migrate

        async def go() -> list[int]:
            conn = await connect(cfg.database)
            try:
                return await migrate(conn)
            finally:
                await conn.close()
        return asyncio.run(go())
    from shoal.server.store import SqliteStore

    store = SqliteStore(sqlite_path(cfg.database, cfg.state_dir))
    try:
        return store.migrate()
    finally:
        store.close()


def cmd_server_migrate(args: argparse.Namespace) -> int:
    from shoal.config import load_server_config
    from shoal.server.migrations import MIGRATIONS

    cfg = load_server_config(args.config)
    done = _migrate(cfg)
    latest = MIGRATIONS[-1].version
    if done:
        print(f"applied migrations {', '.join(map(str, done))}; schema version {latest}")
    else:
        print(f"schema is up to date (version {latest})")
    return 0


def cmd_server_import(args: argparse.Namespace) -> int:
    from shoal.config import load_server_config
    from shoal.server.importer import import_sqlite
    from shoal.server.store import is_postgres

    cfg = load_server_config(args.config)
    if not is_postgres(cfg.database):
        raise ShoalError(f"{args.config}: database: import needs database = "
                         "\"postgresql://...\" (the target)")
    nodes, nets, members = asyncio.run(import_sqlite(args.source, cfg.database))
    print(f"imported {nodes} nodes, {nets} networks, {members} members from {args.source}")
    return 0


def _private_files() -> None:
    """Everything the server creates (database and its -wal/-shm journal, secrets)
    is readable by its own user only."""
    os.umask(0o077)


def cmd_server_run(args: argparse.Namespace) -> int:
    from shoal import identity
    from shoal.config import load_server_config
    from shoal.plugin_context import PluginContext
    from shoal.config import plugin_settings
    from shoal.server.app import Server

    memory.prefer_system_malloc()   # so a flood's memory can be given back
    cfg = load_server_config(args.config)
    _setup_logging("debug" if args.verbose else cfg.log_level)
    _private_files()
    kp = identity.load_or_create(cfg.state_dir, create=False, key_file=SERVER_KEY_FILE,
                                 missing_hint=f"run 'shoal server init -c {args.config}'")
    pm = load_plugins(cfg.plugins)
    ctx = PluginContext(cfg, plugin_settings(cfg, pm, args.config))
    services: list[Any] = []

    def register(name: str, start: Any) -> None:
        services.append(start)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        server = Server(cfg, kp)
        ctx.server = server
        pm.hook.shoal_server_register_services(register=register, context=ctx)
        server.services = services
        pm.hook.shoal_metrics_register_collectors(register=server.collectors.append, context=ctx)
        await server.run(stop)

    try:
        asyncio.run(main())
    except OSError as e:
        raise ShoalError(f"cannot start the server: {e.strerror or e}") from None
    return 0


def cmd_server_admin_token(args: argparse.Namespace) -> int:
    from shoal.config import load_server_config
    from shoal.server import admin_auth

    cfg = load_server_config(args.config)
    path = admin_auth.token_path(cfg.state_dir, cfg.admin.token_file)
    token = admin_auth.load_or_create_token(path, create=True, rotate=args.rotate)
    if args.rotate:
        print("new admin token; pages signed in with the old one are signed out", file=sys.stderr)
    print(token)
    return 0


def cmd_network(args: argparse.Namespace) -> int:
    op = args.network_command
    a: dict[str, Any] = {}
    if op in ("create", "join", "set"):
        pw = _password(args)
        if pw is not None:
            a["password"] = pw
        elif op in ("create", "join"):
            raise ShoalError(f"network {op} needs --password, --password-file or SHOAL_PASSWORD")
    if op != "list":
        a["name"] = args.name
    if op == "create":
        a.update(join_mode=args.mode, member_limit=args.limit, type=args.type)
    elif op in ("approve", "evict"):
        a["member"] = args.member
    elif op == "set":
        for k in ("join_mode", "member_limit", "type", "owner", "gateway", "lan_route"):
            v = getattr(args, k)
            if v is not None:
                a[k] = v
        a["hub_add"] = args.hub or []
        a["hub_remove"] = args.no_hub or []
    result = api.call(_socket_path(args), "network", {"op": op, "args": a})
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    if op == "list":
        rows = [("NETWORK", "TYPE", "ROLE", "MODE", "MEMBERS", "ONLINE")]
        rows += [(n["name"], n["type"], n["role"], n["join_mode"],
                  f"{n['members']}/{n['member_limit']}" + (f" (+{n['pending']} pending)"
                                                           if n.get("pending") else ""),
                  str(n.get("online", 0))) for n in result]
        _table(rows)
    elif op == "members":
        rows = [("NAME", "VIRTUAL IP", "ROLE", "STATE", "PUBLIC KEY")]
        rows += [(x["name"], x["virtual_ip"], x["role"], "online" if x["online"] else "offline",
                  x["public_key"]) for x in result]
        _table(rows)
    else:
        done = {"create": "created", "join": "joined", "leave": "left", "approve": "approved",
                "evict": "evicted", "set": "updated", "delete": "deleted"}[op]
        who = f" {args.member}" if op in ("approve", "evict") else ""
        print(f"network {args.name}:{who} {done}")
    return 0


def cmd_route(args: argparse.Namespace) -> int:
    """``shoal network route add|approve|remove|list``: gateway routes of a network."""
    op = {"add": "route_add", "approve": "route_approve", "remove": "route_remove",
          "list": "routes"}[args.route_command]
    a: dict[str, Any] = {"name": args.name}
    if op != "routes":
        a["prefix"] = args.prefix
    if op == "route_add" and args.masquerade:
        a["masquerade"] = True
    result = api.call(_socket_path(args), "network", {"op": op, "args": a})
    if args.json:
        print(json.dumps(result, indent=2))
    elif op == "routes":
        rows = [("PREFIX", "GATEWAY", "APPROVED", "MASQUERADE")]
        rows += [(r["prefix"], r.get("gateway_name") or r["gateway"],
                  "yes" if r["approved"] else "no", "yes" if r.get("masquerade") else "no")
                 for r in result]
        _table(rows)
    elif op == "route_add":
        state = "approved" if result.get("approved") else "waiting for the owner's approval"
        print(f"network {args.name}: route {result['prefix']} announced ({state})")
    else:
        done = "approved" if op == "route_approve" else "removed"
        print(f"network {args.name}: route {args.prefix} {done}")
    return 0


def _password(args: argparse.Namespace) -> str | None:
    if getattr(args, "password", None):
        return str(args.password)
    if getattr(args, "password_file", None):
        try:
            from pathlib import Path

            return Path(args.password_file).read_text().strip()
        except OSError as e:
            raise ShoalError(f"{args.password_file}: cannot read password file: {e.strerror}") \
                from None
    return os.environ.get("SHOAL_PASSWORD")


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def cmd_ping(args: argparse.Namespace) -> int:
    r = api.call(_socket_path(args), "ping",
                 {"peer": args.peer, "count": args.count, "interval": args.interval},
                 timeout=args.count * args.interval + 10)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        via = f"{r['path']} ({r.get('transport') or '-'} {r.get('endpoint') or '-'})"
        for seq, rtt in enumerate(r["rtt_ms"], start=1):
            if rtt is None:
                print(f"{r['peer']} ({r['virtual_ip']}): seq={seq} timeout")
            else:
                print(f"{r['peer']} ({r['virtual_ip']}): seq={seq} time={rtt:.2f} ms via {via}")
    lost = sum(1 for x in r["rtt_ms"] if x is None)
    if lost == len(r["rtt_ms"]):
        raise ShoalError(f"no reply from {r['peer']} ({r['virtual_ip']})")
    return 0


def _stun_line(v: dict[str, Any]) -> str:
    """One STUN server: where it came from and what it told (or why it told nothing)."""
    head = f"{v['server']} ({v['origin']})"
    if not v.get("reachable"):
        return f"{head}: unreachable: {v.get('error') or 'no answer'}"
    told = f"public {v.get('public_endpoint')}"
    if v.get("rtt_ms") is not None:
        told += f", rtt {v['rtt_ms']:.1f} ms"
    if v.get("mapping"):
        told += f", mapping {v['mapping']}, filtering {v['filtering']}"
    elif not v.get("rfc5780"):
        told += ", no RFC 5780 (no OTHER-ADDRESS)"
    return f"{head}: {told}"


def cmd_netcheck(args: argparse.Namespace) -> int:
    r = api.call(_socket_path(args), "netcheck", timeout=30)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    nat = r.get("nat")
    print(f"server   {r.get('server') or '-'} ({'online' if r.get('online') else 'offline'})")
    if nat is None:
        print("nat      unknown (the 'ice' plugin is not enabled)")
    elif not nat.get("udp", True):
        print("nat      UDP is blocked: peers are reached through the relay (TCP)")
    else:
        by = f" (told by {nat['server']})" if nat.get("server") else ""
        print(f"nat      mapping {nat['mapping']}, filtering {nat['filtering']}{by}")
        print(f"public   {nat.get('public_endpoint') or '-'}")
    for v in (nat or {}).get("stun") or []:
        print(f"stun     {_stun_line(v)}")
    relays = r.get("relays") or ([r["relay"]] if r.get("relay") else [])
    if not relays:
        print("relay    none (no relay plugin is enabled)")
    for relay in relays:
        if "servers" in relay:  # a transport with several servers (turn): one line each
            for srv in relay["servers"]:
                print(f"{relay['transport']:<8} {_server_line(srv)}")
            continue
        rtt = f", rtt {relay['rtt_ms']:.1f} ms" if relay.get("rtt_ms") is not None else ""
        how = "reachable via " + str(relay.get("mode")) if relay["ready"] else "unreachable"
        print(f"relay    {how} {relay.get('address') or ''}{rtt}")
    return 0


def _server_line(srv: dict[str, Any]) -> str:
    """One relay server: reachable (relayed address, RTT) or its error in one line."""
    head = f"{srv['server']} ({srv.get('transport', '?')}"
    head += ", announced by the server)" if srv.get("announced") else ")"
    if srv.get("error"):
        return f"{head}: {srv['error']}"
    rtt = f", rtt {srv['rtt_ms']:.1f} ms" if srv.get("rtt_ms") is not None else ""
    used = ", in use" if srv.get("selected") else ""
    where = f"relayed {srv['relayed']}" if srv.get("relayed") else "reachable"
    return f"{head}: {where}{rtt}{used}"


def cmd_plugins(args: argparse.Namespace) -> int:
    enabled: list[str] = []
    if args.config:
        enabled = load_node_config(args.config).plugins
    infos = list_plugins(enabled)
    if args.json:
        print(json.dumps([i.__dict__ for i in infos], indent=2))
        return 0
    rows = [("NAME", "DISTRIBUTION", "VERSION", "ENABLED")]
    for i in infos:
        state = "built-in" if i.builtin else ("yes" if i.enabled else "no")
        rows.append((i.name, i.distribution, i.version, state))
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


# ----------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shoal", description="Shoal peer-to-peer VPN")
    p.add_argument("--version", action="version", version=f"shoal {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    up = sub.add_parser("up", help="run a node in the foreground")
    up.add_argument("-c", "--config", required=True, help="node config (TOML)")
    up.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    up.add_argument("--no-progress", action="store_true",
                    help="no start-up progress lines, even in a terminal")
    up.set_defaults(func=cmd_up)

    svc = sub.add_parser("service", help="run Shoal as a system service (systemd)")
    vsub = svc.add_subparsers(dest="service_command", metavar="SUBCOMMAND", required=True)
    vin = vsub.add_parser("install", help="install systemd units: shoal@NAME (a node reading "
                                          "/etc/shoal/NAME.toml), shoal-server, shoal-relay")
    vin.add_argument("--unit-dir", default="/etc/systemd/system")
    vin.add_argument("--config-dir", default="/etc/shoal")
    vin.add_argument("--shoal", help="path of the shoal executable (default: this one)")
    vin.add_argument("--no-reload", action="store_true", help="skip systemctl daemon-reload")
    vin.set_defaults(func=cmd_service_install)

    key = sub.add_parser("key", help="the node's key")
    ksub = key.add_subparsers(dest="key_command", metavar="SUBCOMMAND")
    kpub = ksub.add_parser("public", help="print the node's public key (creates the key pair)")
    kpub.add_argument("-c", "--config", required=True)
    kpub.set_defaults(func=cmd_key_public)

    st = sub.add_parser("status", help="this node, its networks, peers and paths")
    st.add_argument("-c", "--config")
    st.add_argument("--socket")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)

    srv = sub.add_parser("server", help="the coordination server")
    ssub = srv.add_subparsers(dest="server_command", metavar="SUBCOMMAND")
    sinit = ssub.add_parser("init", help="create the server key and state; print the public key")
    sinit.add_argument("-c", "--config", required=True, help="server config (TOML)")
    sinit.set_defaults(func=cmd_server_init)
    from shoal.server import admin_cli

    admin_cli.register(ssub)
    srun = ssub.add_parser("run", help="run the coordination server in the foreground")
    srun.add_argument("-c", "--config", required=True)
    srun.add_argument("-v", "--verbose", action="store_true")
    srun.set_defaults(func=cmd_server_run)
    smig = ssub.add_parser("migrate", help="apply pending schema migrations to the database")
    smig.add_argument("-c", "--config", required=True)
    smig.set_defaults(func=cmd_server_migrate)
    simp = ssub.add_parser("import", help="copy a single server's SQLite state into the "
                                          "PostgreSQL database of the config")
    simp.add_argument("-c", "--config", required=True)
    simp.add_argument("--from", dest="source", required=True, metavar="SQLITE",
                      help="the SQLite database file (STATE_DIR/shoal.db)")
    simp.set_defaults(func=cmd_server_import)

    stok = ssub.add_parser("admin-token", help="print the admin page's token (created if none)")
    stok.add_argument("-c", "--config", required=True)
    stok.add_argument("--rotate", action="store_true",
                      help="replace the token (signs out every admin page)")
    stok.set_defaults(func=cmd_server_admin_token)

    net = sub.add_parser("network", help="create, join and manage networks")
    nsub = net.add_subparsers(dest="network_command", metavar="SUBCOMMAND", required=True)

    def nparser(name: str, help: str, member: bool = False, named: bool = True,
                password: bool = False) -> argparse.ArgumentParser:
        p = nsub.add_parser(name, help=help)
        if named:
            p.add_argument("name", help="network name")
        if member:
            p.add_argument("member", help="member: node name, virtual IP or public key")
        if password:
            p.add_argument("--password", help="network password (or SHOAL_PASSWORD)")
            p.add_argument("--password-file", help="read the password from this file")
        p.add_argument("-c", "--config")
        p.add_argument("--socket")
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=cmd_network)
        return p

    nc = nparser("create", "create a network (this node becomes its owner)", password=True)
    nc.add_argument("--mode", choices=["open", "approval", "locked"], default="open",
                    help="who may join: anyone with the password, after approval, nobody")
    nc.add_argument("--limit", type=int, default=256, help="member limit")
    nc.add_argument("--type", choices=["mesh", "hub-and-spoke", "gateway"], default="mesh")
    nparser("join", "join a network with its password", password=True)
    nparser("leave", "leave a network")
    nparser("list", "networks this node belongs to", named=False)
    nparser("members", "members of a network")
    nparser("approve", "approve a pending member (owner)", member=True)
    nparser("evict", "remove a member (owner)", member=True)
    nparser("delete", "delete a network (owner)")
    ns = nparser("set", "change a network's settings (owner)", password=True)
    ns.add_argument("--mode", dest="join_mode", choices=["open", "approval", "locked"])
    ns.add_argument("--limit", dest="member_limit", type=int)
    ns.add_argument("--type", choices=["mesh", "hub-and-spoke", "gateway"])
    ns.add_argument("--owner", help="transfer ownership to this member")
    ns.add_argument("--hub", action="append", help="mark a member as hub (repeatable)")
    ns.add_argument("--no-hub", action="append", help="unmark a hub (repeatable)")
    ns.add_argument("--gateway", help="member that bridges the network to its LAN")
    ns.add_argument("--lan-route", dest="lan_route", help="the LAN the gateway announces (CIDR)")

    rt = nsub.add_parser("route", help="gateway routes: LANs reached through a member")
    rsub = rt.add_subparsers(dest="route_command", metavar="SUBCOMMAND", required=True)
    for name, help_ in (("add", "announce a LAN this node reaches (it becomes the gateway)"),
                        ("approve", "approve an announced route (owner)"),
                        ("remove", "withdraw a route (its gateway or the owner)"),
                        ("list", "routes of a network and their gateways")):
        r = rsub.add_parser(name, help=help_)
        r.add_argument("name", help="network name")
        if name != "list":
            r.add_argument("prefix", help="the LAN, e.g. 192.168.50.0/24")
        if name == "add":
            r.add_argument("--masquerade", action="store_true",
                           help="rewrite members' sources to this node's LAN address")
        r.add_argument("-c", "--config")
        r.add_argument("--socket")
        r.add_argument("--json", action="store_true")
        r.set_defaults(func=cmd_route)

    pg = sub.add_parser("ping", help="overlay ping: path (direct/relay) and RTT per reply")
    pg.add_argument("peer", help="peer name, overlay address or public key")
    pg.add_argument("-c", "--count", type=int, default=4)
    pg.add_argument("-i", "--interval", type=float, default=1.0)
    pg.add_argument("--config", "--conf", dest="config")
    pg.add_argument("--socket")
    pg.add_argument("--json", action="store_true")
    pg.set_defaults(func=cmd_ping)

    nc_ = sub.add_parser("netcheck", help="NAT behaviour, public endpoint, relay reachability")
    nc_.add_argument("-c", "--config")
    nc_.add_argument("--socket")
    nc_.add_argument("--json", action="store_true")
    nc_.set_defaults(func=cmd_netcheck)

    pl = sub.add_parser("plugins", help="installed plugins, versions, enabled or not")
    pl.add_argument("-c", "--config")
    pl.add_argument("--json", action="store_true")
    pl.set_defaults(func=cmd_plugins)
    return p


def _register_plugin_commands(parser: argparse.ArgumentParser) -> None:
    """Let every installed plugin add subcommands (all installed ones, not only enabled)."""
    from shoal.plugins import new_plugin_manager, _entry_points

    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    pm = new_plugin_manager()
    for name, ep in _entry_points().items():
        try:
            pm.register(ep.load(), name=name)
        except Exception:  # noqa: BLE001 - a broken plugin must not break the CLI
            continue
    pm.hook.shoal_cli_register_commands(subparsers=sub)


def main(argv: list[str] | None = None) -> int:
    if argv is None:   # the ``shoal`` command itself, not a call from Python
        memory.FROM_COMMAND_LINE = True
    parser = build_parser()
    _register_plugin_commands(parser)
    args = parser.parse_args(argv)
    func: Any = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(func(args) or 0)
    except ShoalError as e:
        print(f"shoal: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
