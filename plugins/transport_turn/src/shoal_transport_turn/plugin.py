"""Entry point ``turn``: relayed candidates on standard TURN servers (RFC 8656; coturn).

``[plugin.turn]`` lists servers, each with long-term credentials or coturn's
shared secret (``use-auth-secret``: the node mints a REST-API credential for
itself, valid ``ttl`` seconds). Secrets are read once, kept out of ``repr``
and logs; status shows the username only.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from shoal.control.messages import PeerInfo
from shoal.errors import ConfigError
from shoal.hookspecs import hookimpl
from shoal.plugin_api import NodeHandle, NodePlugin, PeerView
from shoal.transport import Transport, require_contract

from shoal_transport_turn.client import ServerSpec
from shoal_transport_turn.credentials import Credentials, rest_api
from shoal_transport_turn.transport import TurnTransport

log = logging.getLogger(__name__)


class TurnServer(BaseModel):
    """One ``[[plugin.turn.servers]]`` entry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str                                  # turn:HOST:PORT[?transport=tcp] | turns:HOST:PORT
    username: str | None = None               # long-term credentials ...
    password: str | None = Field(None, repr=False)
    password_file: str | None = None
    secret: str | None = Field(None, repr=False)   # ... or coturn's static-auth-secret
    secret_file: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        ServerSpec.parse(v)
        return v

    @model_validator(mode="after")
    def _one_credential(self) -> TurnServer:
        long_term = self.username is not None or self.password is not None \
            or self.password_file is not None
        shared = self.secret is not None or self.secret_file is not None
        if long_term == shared:
            raise ValueError("give either username + password (or password_file), or secret "
                             "(or secret_file) for coturn's use-auth-secret")
        if long_term and (self.username is None
                          or (self.password is None) == (self.password_file is None)):
            raise ValueError("long-term credentials need username and one of password, "
                             "password_file")
        if shared and self.secret is not None and self.secret_file is not None:
            raise ValueError("give secret or secret_file, not both")
        return self


class TurnSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    servers: list[TurnServer] = Field(default_factory=list, max_length=8)
    ttl: int = Field(86400, ge=60, le=30 * 86400)    # lifetime of REST-API credentials (s)
    ca_file: str | None = None                       # CA bundle for turns: servers


def _read(path: str, what: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as e:
        raise ConfigError(f"plugin.turn: cannot read {what} {path}: {e.strerror}") from None


def credentials_for(server: TurnServer, name: str, ttl: int,
                    clock: Callable[[], float] = time.time) -> Callable[[], Credentials]:
    """A factory of fresh credentials (REST-API ones are minted anew on each allocation)."""
    if server.username is not None:
        password = server.password if server.password is not None \
            else _read(server.password_file or "", "password_file")
        creds = Credentials(server.username, password)
        return lambda: creds
    secret = server.secret if server.secret is not None \
        else _read(server.secret_file or "", "secret_file")
    return lambda: rest_api(secret, name, ttl, clock())


@hookimpl
def shoal_config_register_settings(register):  # type: ignore[no-untyped-def]
    register("turn", TurnSettings)


class TurnNodePlugin(NodePlugin):
    def __init__(self, node: NodeHandle) -> None:
        require_contract((1, 0), "turn")
        self.node = node
        settings = node.settings(TurnSettings)
        tls = ssl.create_default_context(cafile=settings.ca_file) if settings.ca_file else None
        servers = [(ServerSpec.parse(s.url), credentials_for(s, node.config.name, settings.ttl))
                   for s in settings.servers]
        self.transport = TurnTransport(servers, tls_context=tls)
        if not servers:
            log.warning("turn: no [[plugin.turn.servers]] configured; the plugin stays idle")

    def transports(self) -> list[Transport]:
        return [self.transport] if self.transport.servers else []

    def on_peer(self, peer: PeerView, info: PeerInfo) -> None:
        self.transport.watch_peer(peer.public_key, list(info.endpoints),
                                  info.nat.public_endpoint)

    def on_peer_gone(self, peer_key: bytes) -> None:
        self.transport.forget_peer(peer_key)

    def status(self, status: dict[str, Any]) -> None:
        status["turn"] = self.transport.describe()   # netcheck lists it with the relays


@hookimpl
def shoal_node_plugin(node: NodeHandle) -> TurnNodePlugin:
    return TurnNodePlugin(node)
