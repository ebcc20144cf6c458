"""``shoal server key create|list|revoke`` and ``shoal server prune``: admission
chores done on the server's store directly, SQLite or PostgreSQL (the server
may be running: the key table is read at each new registration, never cached).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from shoal.errors import ShoalError
from shoal.server import auth_keys
from shoal.server.auth_key_store import auth_key_store


async def _v(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _with_keys(config: str, fn: Callable[[Any], Awaitable[Any]]) -> Any:
    from shoal.config import load_server_config
    from shoal.server.store import is_postgres, open_store, sqlite_path

    cfg = load_server_config(config)
    os.umask(0o077)
    if not is_postgres(cfg.database) and not Path(sqlite_path(cfg.database,
                                                              cfg.state_dir)).exists():
        raise ShoalError(f"{config}: no server state yet; run 'shoal server init -c {config}'")

    async def go() -> Any:
        store = await open_store(cfg.database, cfg.state_dir)
        try:
            return await fn(auth_key_store(store))
        finally:
            await _v(store.aclose())

    return asyncio.run(go())


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + "Z"


def cmd_key(args: argparse.Namespace) -> int:
    now = time.time()
    op = args.key_command
    expires = now + auth_keys.parse_duration(args.expires) if getattr(args, "expires", None) \
        else None

    async def go(keys: Any) -> Any:
        if op == "create":
            text, rec = auth_keys.generate(now, args.reusable, expires, args.network)
            await _v(keys.put(rec))
            return text, rec
        if op == "list":
            return await _v(keys.all())
        return await _v(keys.revoke(args.id))

    result = _with_keys(args.config, go)
    if op == "create":
        text, rec = result
        print(f"pre-auth key {rec.id} ({'reusable' if rec.reusable else 'single use'}, "
              f"expires {_when(rec.expires)}"
              + (f", joins {rec.network}" if rec.network else "") + "); give the node:")
        print(text)
    elif op == "list":
        if args.json:
            print(json.dumps([{**k.__dict__, "state": k.state(now)} for k in result]))
            return 0
        rows = [("ID", "STATE", "USES", "REUSABLE", "NETWORK", "EXPIRES", "CREATED")]
        rows += [(k.id, k.state(now), str(k.uses), "yes" if k.reusable else "no",
                  k.network or "-", _when(k.expires), _when(k.created)) for k in result]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    elif not result:
        raise ShoalError(f"no pre-auth key with id {args.id!r} "
                         f"(see 'shoal server key list -c {args.config}')")
    else:
        print(f"pre-auth key {args.id} revoked")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    cutoff = time.time() - auth_keys.parse_duration(args.older_than)

    async def go(keys: Any) -> Any:
        return await _v(keys.prune_nodes(cutoff))

    gone = _with_keys(args.config, go)
    print(f"forgot {len(gone)} node(s) not seen since {_when(cutoff)} (their addresses are "
          "free again; owners of networks are kept); restart the server to apply")
    return 0


def register(ssub: Any) -> None:
    key = ssub.add_parser("key", help="pre-auth keys for registration = \"key\"")
    ksub = key.add_subparsers(dest="key_command", metavar="SUBCOMMAND", required=True)
    create = ksub.add_parser("create", help="create a pre-auth key; prints it last")
    create.add_argument("--reusable", action="store_true", help="usable by many nodes")
    create.add_argument("--expires", help="lifetime, e.g. 1h, 7d (default: never)")
    create.add_argument("--network", help="network the node joins with it (no password)")
    lst = ksub.add_parser("list", help="pre-auth keys and their state")
    lst.add_argument("--json", action="store_true")
    rev = ksub.add_parser("revoke", help="revoke a pre-auth key")
    rev.add_argument("id", help="the key's id (shoal-key-ID-...)")
    for p in (create, lst, rev):
        p.add_argument("-c", "--config", required=True, help="server config (TOML)")
        p.set_defaults(func=cmd_key)
    prune = ssub.add_parser("prune", help="forget nodes that have not logged in for a while")
    prune.add_argument("--older-than", required=True, help="e.g. 90d")
    prune.add_argument("-c", "--config", required=True, help="server config (TOML)")
    prune.set_defaults(func=cmd_prune)
