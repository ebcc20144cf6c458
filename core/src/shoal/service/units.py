"""systemd units for a node (``shoal@NAME``), the coordination server and a standalone relay.

``shoal service install`` writes them with the absolute path of the ``shoal``
executable that runs the command (so a virtualenv install works), then asks
systemd to reload. Each unit reads its config from ``/etc/shoal``:

============================  ==================================================
``shoal@NAME.service``        ``shoal up -c /etc/shoal/NAME.toml`` (one per node)
``shoal-server.service``      ``shoal server run -c /etc/shoal/server.toml``
``shoal-relay.service``       ``shoal relay run -c /etc/shoal/relay.toml``
============================  ==================================================

All stop with SIGTERM (a clean shutdown: the node says goodbye to the server,
releases its interface, routes and firewall rules) and restart on failure.
``/run/shoal`` (API sockets) and ``/var/lib/shoal`` (state) are created by
systemd and shared by the instances.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

CONFIG_DIR = "/etc/shoal"
UNIT_DIR = "/etc/systemd/system"

_COMMON = """\
Restart=on-failure
RestartSec=2
KillSignal=SIGTERM
TimeoutStopSec=20
RuntimeDirectory=shoal
RuntimeDirectoryPreserve=yes
StateDirectory=shoal
Environment=PYTHONUNBUFFERED=1
NoNewPrivileges=yes
ProtectHome=yes
PrivateTmp=yes
"""

_TEMPLATE = """\
[Unit]
Description={description}
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={shoal} {command} -c {config_dir}/{config}
{common}
[Install]
WantedBy=multi-user.target
"""

#: unit file -> (description, shoal subcommand, config file under config_dir)
_UNITS = {
    "shoal@.service": ("Shoal VPN node %i", "up", "%i.toml"),
    "shoal-server.service": ("Shoal coordination server", "server run", "server.toml"),
    "shoal-relay.service": ("Shoal standalone relay", "relay run", "relay.toml"),
}

UNITS = tuple(_UNITS)


def shoal_executable() -> str:
    """The ``shoal`` script beside this interpreter (a virtualenv's), else the one on PATH."""
    here = Path(sys.executable).with_name("shoal")
    if here.exists():
        return str(here)
    return shutil.which("shoal") or "/usr/bin/shoal"


def render(unit: str, shoal: str, config_dir: str = CONFIG_DIR) -> str:
    if " " in shoal or " " in config_dir:
        raise ValueError("paths with spaces cannot go on an ExecStart line unquoted")
    description, command, config = _UNITS[unit]
    return _TEMPLATE.format(description=description, shoal=shoal, command=command,
                            config_dir=config_dir, config=config, common=_COMMON)


def install(unit_dir: str = UNIT_DIR, shoal: str | None = None, config_dir: str = CONFIG_DIR,
            reload: bool = True) -> list[Path]:
    """Write every unit into ``unit_dir``; ``systemctl daemon-reload`` when systemd runs."""
    exe = shoal or shoal_executable()
    d = Path(unit_dir)
    d.mkdir(parents=True, exist_ok=True)
    written = []
    for unit in UNITS:
        p = d / unit
        p.write_text(render(unit, exe, config_dir))
        p.chmod(0o644)
        written.append(p)
    if reload and Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
        subprocess.run(["systemctl", "daemon-reload"], check=False)
    return written
