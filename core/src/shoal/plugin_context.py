"""What server-side and config hooks get to see (node plugins get a ``NodeHandle``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from shoal.plugin_api import ServerHandle


@dataclass
class PluginContext:
    """Handed to server hooks at start-up.

    ``config`` is the validated server config, ``settings`` maps plugin name to
    its validated ``[plugin.NAME]`` model, ``server`` is the running server's
    handle (None while only the config is being checked).
    """

    config: Any
    settings: dict[str, BaseModel] = field(default_factory=dict)
    server: ServerHandle | None = None

    def settings_for(self, name: str) -> BaseModel | None:
        return self.settings.get(name)
