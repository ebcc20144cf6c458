"""Tell systemd-resolved that ``shoal.`` names live on the Shoal interface.

Only where systemd-resolved runs: ``resolvectl dns IFACE ADDR[:PORT]`` and
``resolvectl domain IFACE ~shoal`` (a routing-only domain: only ``*.shoal``
queries go to the node, the host's other DNS is unchanged); ``revert`` on
shutdown. Anywhere else the host's DNS configuration is left untouched.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Awaitable, Callable

Runner = Callable[[list[str]], Awaitable[tuple[int, str]]]
RESOLVED_DIR = "/run/systemd/resolve"


def resolved_running(resolve_dir: str = RESOLVED_DIR) -> bool:
    return shutil.which("resolvectl") is not None and \
        os.path.exists(os.path.join(resolve_dir, "io.systemd.Resolve"))


async def run(argv: list[str]) -> tuple[int, str]:
    p = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL,
                                             stderr=asyncio.subprocess.PIPE)
    _, err = await p.communicate()
    return p.returncode or 0, err.decode(errors="replace").strip()


def register_commands(ifname: str, host: str, port: int) -> list[list[str]]:
    server = host if port == 53 else f"{host}:{port}"
    return [["resolvectl", "dns", ifname, server],
            ["resolvectl", "domain", ifname, "~shoal"]]


async def register(ifname: str, host: str, port: int, runner: Runner = run) -> str | None:
    """None when registered, else one line saying what failed."""
    for argv in register_commands(ifname, host, port):
        rc, err = await runner(argv)
        if rc != 0:
            return f"{' '.join(argv)}: {err or f'exit {rc}'}"
    return None


async def revert(ifname: str, runner: Runner = run) -> None:
    await runner(["resolvectl", "revert", ifname])
