"""What hooks get to see of the running node or server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel


@dataclass
class PluginContext:
    """Handed to hooks at start-up.

    ``config`` is the validated node or server config, ``settings`` maps plugin
    name to its validated ``[plugin.NAME]`` model, ``node``/``server`` is the
    running object (None while only the config is being checked).
    """

    config: Any
    settings: dict[str, BaseModel] = field(default_factory=dict)
    node: Any = None
    server: Any = None

    def settings_for(self, name: str) -> BaseModel | None:
        return self.settings.get(name)
