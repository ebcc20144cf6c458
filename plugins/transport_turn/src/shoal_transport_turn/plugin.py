"""Entry point ``turn``: relayed candidates on standard TURN servers (RFC 8656; coturn).

``[plugin.turn]`` lists servers, each with long-term credentials or coturn's
shared secret (``use-auth-secret``: the node mints a REST-API credential for
itself, valid ``ttl`` seconds). Secrets are read once, kept out of ``repr``
and logs; status shows the username only.

A coordination server with ``plugins = ["turn"]`` can announce TURN servers
instead (``[[plugin.turn.announce]]``, each with the coturn shared secret):
every node gets, with its relay grants, the URL and a REST-API credential
minted for its key (``RelayGrant.endpoints["turn"]``, ``token`` the password,
``expires`` the time in the username), so nodes need no TURN secret of their
own. A server a node configures itself wins over the same one announced.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from shoal.control.messages import Grants, PeerInfo, RelayGrant, Welcome
from shoal.errors import ConfigError
from shoal.hookspecs import hookimpl
from shoal.plugin_api import NodeHandle, NodePlugin, PeerView
from shoal.plugin_context import PluginContext
from shoal.transport import Transport, require_contract

from shoal_transport_turn.client import ServerSpec
from shoal_transport_turn.credentials import Credentials, rest_api
from shoal_transport_turn.transport import TurnTransport

log = logging.getLogger(__name__)


def _check_url(v: str) -> str:
    ServerSpec.parse(v)
    return v


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


class AnnouncedTurn(BaseModel):
    """One ``[[plugin.turn.announce]]`` entry of a coordination server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    secret: str | None = Field(None, repr=False)   # coturn's static-auth-secret
    secret_file: str | None = None

    _u = field_validator("url")(_check_url)

    @model_validator(mode="after")
    def _one_secret(self) -> AnnouncedTurn:
        if (self.secret is None) == (self.secret_file is None):
            raise ValueError("give secret or secret_file (coturn's static-auth-secret)")
        return self


class TurnSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    servers: list[TurnServer] = Field(default_factory=list, max_length=8)
    announce: list[AnnouncedTurn] = Field(default_factory=list, max_length=8)   # servers only
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
        self.key_b64 = node.keypair.public_b64
        #: url -> (username, password) of the newest credential the server handed out
        self._announced: dict[str, tuple[str, str]] = {}
        if not servers:
            log.info("turn: no [[plugin.turn.servers]] configured; waiting for servers "
                     "announced by the coordination server")

    def transports(self) -> list[Transport]:
        return [self.transport]

    def on_login(self, welcome: Welcome) -> None:
        self._take(welcome.relays)

    def on_grants(self, grants: Grants) -> None:
        self._take(grants.relays)

    def _take(self, grants: list[RelayGrant]) -> None:
        """TURN servers the coordination server announced, with fresh credentials."""
        fresh: dict[str, tuple[str, str]] = {}
        for g in grants:
            url = g.endpoints.get("turn")
            if url is None:
                continue
            try:
                ServerSpec.parse(url)
            except ValueError:
                log.warning("turn: ignoring an announced server with a bad URL %r", url)
                continue
            fresh[url] = (f"{g.expires}:{self.key_b64}", g.token)
        if set(fresh) != set(self._announced):
            self.transport.set_announced([(ServerSpec.parse(u), self._creds(u)) for u in fresh])
        self._announced = fresh

    def _creds(self, url: str) -> Callable[[], Credentials]:
        return lambda: Credentials(*self._announced[url])

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


# ------------------------------------------------------------------ server side
def announced_grant(url: str, secret: str, key_b64: str, ttl: int,
                    now: float | None = None) -> RelayGrant:
    """What a node is handed for one announced TURN server: a REST-API credential
    minted for its key (username ``expires:key``, password in ``token``)."""
    creds = rest_api(secret, key_b64, ttl, time.time() if now is None else now)
    expires = int(creds.username.split(":", 1)[0])
    return RelayGrant(endpoints={"turn": url}, token=creds.password, expires=expires)


@hookimpl
def shoal_server_register_services(register, context: PluginContext) -> None:  # type: ignore[no-untyped-def]
    settings = context.settings_for("turn")
    server = context.server
    if not isinstance(settings, TurnSettings) or server is None:
        return
    for entry in settings.announce:
        secret = entry.secret if entry.secret is not None \
            else _read(entry.secret_file or "", "secret_file")

        def grant(key_b64: str, networks: list[str], url: str = entry.url,
                  secret: str = secret) -> RelayGrant:
            return announced_grant(url, secret, key_b64, settings.ttl)

        server.add_relay_granter(grant)
