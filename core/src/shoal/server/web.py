"""The server's HTTP endpoints, each off unless configured: ``[metrics]`` and ``[admin]``."""

from __future__ import annotations

from typing import Any, Protocol

from shoal.server.admin import start_admin
from shoal.server.metrics import start_server_metrics


class Endpoint(Protocol):
    async def close(self) -> None: ...


async def start_web(server: Any) -> list[Endpoint]:
    """Start the configured endpoints; if one cannot start, close the others and raise."""
    started: list[Endpoint] = []
    try:
        metrics = await start_server_metrics(server)
        if metrics is not None:
            started.append(metrics)
        admin = await start_admin(server)
        if admin is not None:
            started.append(admin)
    except BaseException:
        for ep in started:
            await ep.close()
        raise
    return started
