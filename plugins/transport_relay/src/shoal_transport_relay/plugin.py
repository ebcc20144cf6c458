"""Entry point ``relay``: relay client transport (nodes) and relay service (server).

Node side: a ``RelayClient`` transport that becomes ready once the node logs
in and receives a relay grant. Server side (``plugins = ["relay"]`` in the
server config): runs the relay in the server process and issues grants; other
relays sharing the secret file can be announced too, and are told of each
revocation as it happens (``revocations``). ``shoal relay run`` runs a
standalone relay.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import signal
import time
from pathlib import Path
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shoal.config import MetricsConfig, parse_endpoint, read_toml
from shoal.control.messages import Grants, RelayGrant, Welcome
from shoal.errors import ConfigError, ShoalError
from shoal.hookspecs import hookimpl
from shoal.identity import decode_public_key
from shoal.log_throttle import install_loop_handler
from shoal.plugin_api import NodeHandle, NodePlugin
from shoal.plugin_context import PluginContext
from shoal.transport import Transport

from shoal_transport_relay.client import RelayClient
from shoal_transport_relay.protocol import make_token, network_tag
from shoal_transport_relay.revocations import RevocationPusher
from shoal_transport_relay.service import SECRET_FILE, RelayService, load_secret

log = logging.getLogger(__name__)

GRANT_LIFETIME = 600   # seconds; the server pushes a fresh grant well before expiry


def _ep(v: str | None) -> str | None:
    if v is not None:
        parse_endpoint(v)
    return v


class AnnouncedRelay(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    udp: str | None = None
    tcp: str | None = None
    _u = field_validator("udp", "tcp")(_ep)


class RelaySettings(BaseModel):
    """``[plugin.relay]``: on a server, where the in-server relay listens and what to announce."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    listen_udp: str | None = None      # "203.0.113.10:3480"
    listen_tcp: str | None = None      # "203.0.113.10:3480"
    public_udp: str | None = None      # address nodes use, if not the listen address
    public_tcp: str | None = None
    secret_file: str | None = None     # default: STATE_DIR/relay.secret
    rate_limit_mbps: float = Field(100.0, gt=0, le=100000)
    announce: list[AnnouncedRelay] = Field(default_factory=list)   # standalone relays
    grant_lifetime: int = Field(GRANT_LIFETIME, ge=30, le=86400)   # seconds
    max_tcp_connections: int = Field(0, ge=0, le=1_000_000)       # 0: a quarter of the fds
    max_tcp_per_source: int = Field(64, ge=1, le=100_000)
    max_registrations: int = Field(65_536, ge=1, le=10_000_000)

    _v = field_validator("listen_udp", "listen_tcp", "public_udp", "public_tcp")(_ep)


class StandaloneRelayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    listen_udp: str | None = None
    listen_tcp: str | None = None
    secret_file: str
    rate_limit_mbps: float = Field(100.0, gt=0, le=100000)
    grant_lifetime: int = Field(GRANT_LIFETIME, ge=30, le=86400)   # as the server's
    max_tcp_connections: int = Field(0, ge=0, le=1_000_000)
    max_tcp_per_source: int = Field(64, ge=1, le=100_000)
    max_registrations: int = Field(65_536, ge=1, le=10_000_000)
    log_level: str = "info"
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)   # [metrics] listen
    _v = field_validator("listen_udp", "listen_tcp")(_ep)


@hookimpl
def shoal_config_register_settings(register):  # type: ignore[no-untyped-def]
    register("relay", RelaySettings)


# ------------------------------------------------------------------ node side
class RelayNodePlugin(NodePlugin):
    """The relay client of one node: ready once a login brings a grant."""

    def __init__(self, node: NodeHandle) -> None:
        self.client = RelayClient(node.keypair.public)

    def transports(self) -> list[Transport]:
        return [self.client]

    def on_login(self, welcome: Welcome) -> None:
        self.client.on_welcome(welcome)

    def on_grants(self, grants: Grants) -> None:
        self.client.on_welcome(grants)

    def collectors(self) -> list[Any]:
        from shoal_transport_relay.metrics import RelayClientCollector

        return [RelayClientCollector(self.client)]

    def status(self, status: dict[str, Any]) -> None:
        t = self.client
        status["relay"] = {"ready": t.ready, "mode": t.mode, "relay": t.relay,
                           "rtt_ms": None if t.rtt_ms is None else round(t.rtt_ms, 2)}


@hookimpl
def shoal_node_plugin(node: NodeHandle) -> RelayNodePlugin:
    return RelayNodePlugin(node)


# ------------------------------------------------------------------ server side
@hookimpl
def shoal_server_register_services(register, context: PluginContext) -> None:  # type: ignore[no-untyped-def]
    settings = context.settings_for("relay")
    server = context.server
    if not isinstance(settings, RelaySettings) or server is None:
        return
    secret_path = settings.secret_file or str(Path(context.config.state_dir) / SECRET_FILE)
    secret = load_secret(secret_path, create=True)
    relays: list[tuple[str | None, str | None]] = []
    if settings.listen_udp or settings.listen_tcp:
        service = RelayService(secret, settings.listen_udp, settings.listen_tcp,
                               settings.rate_limit_mbps * 125_000,
                               max_tcp=settings.max_tcp_connections,
                               max_tcp_per_source=settings.max_tcp_per_source,
                               max_registrations=settings.max_registrations,
                               grant_lifetime=settings.grant_lifetime)
        register("relay", service.run)
        server.publish("relay", service)
        # Logout and eviction end the node's relay registration here at once
        # (and at the standalone relays below, by a pushed REVOKE).
        server.add_relay_revoker(
            lambda key_b64: service.core.revoke(decode_public_key(key_b64), time.time()))
        relays.append((settings.public_udp or settings.listen_udp,
                       settings.public_tcp or settings.listen_tcp))
    relays += [(r.udp, r.tcp) for r in settings.announce]
    if settings.announce:
        pusher = RevocationPusher(secret, [(r.udp, r.tcp) for r in settings.announce])
        server.publish("relay revocations", pusher)
        server.add_relay_revoker(lambda key_b64: pusher.revoke(decode_public_key(key_b64)))

    lifetime = settings.grant_lifetime
    server.set_relay_grant_lifetime(lifetime)

    def granter(udp: str | None, tcp: str | None):  # type: ignore[no-untyped-def]
        def grant(key_b64: str, networks: list[str]) -> RelayGrant:
            return make_grant(secret, key_b64, networks, lifetime, udp=udp, tcp=tcp)
        return grant

    for udp, tcp in relays:
        server.add_relay_granter(granter(udp, tcp))


@hookimpl
def shoal_metrics_register_collectors(register, context: PluginContext) -> None:  # type: ignore[no-untyped-def]
    from shoal_transport_relay.metrics import RelayCollector, RevocationPushCollector

    server = context.server
    service = server.published("relay") if server is not None else None
    if isinstance(service, RelayService):
        register(RelayCollector(service.core))
    pusher = server.published("relay revocations") if server is not None else None
    if isinstance(pusher, RevocationPusher):
        register(RevocationPushCollector(pusher))


# ------------------------------------------------------------------ CLI
def _cmd_relay_run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError
    from shoal import memory
    from shoal.config import _format_validation_error

    memory.prefer_system_malloc()   # so a flood's memory can be given back
    try:
        cfg = StandaloneRelayConfig.model_validate(read_toml(args.config))
    except ValidationError as e:
        raise ConfigError(_format_validation_error(args.config, e)) from None
    logging.basicConfig(level=getattr(logging, cfg.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    service = RelayService(load_secret(cfg.secret_file, create=False), cfg.listen_udp,
                           cfg.listen_tcp, cfg.rate_limit_mbps * 125_000,
                           max_tcp=cfg.max_tcp_connections,
                           max_tcp_per_source=cfg.max_tcp_per_source,
                           max_registrations=cfg.max_registrations,
                           grant_lifetime=cfg.grant_lifetime)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        install_loop_handler(loop, log)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        metrics = None
        if cfg.metrics.listen is not None:
            from shoal.metrics import MetricsEndpoint, new_registry

            from shoal_transport_relay.metrics import RelayCollector

            registry = new_registry(RelayCollector(service.core))
            metrics = MetricsEndpoint(cfg.metrics.listen, registry, "relay metrics")
            await metrics.start()
        task = asyncio.create_task(service.run())
        await stop.wait()
        task.cancel()
        if metrics is not None:
            await metrics.close()

    try:
        asyncio.run(main())
    except OSError as e:
        raise ShoalError(f"{args.config}: cannot start the relay: {e.strerror or e}") from None
    return 0


@hookimpl
def shoal_cli_register_commands(subparsers) -> None:  # type: ignore[no-untyped-def]
    relay = subparsers.add_parser("relay", help="run a standalone relay")
    rsub = relay.add_subparsers(dest="relay_command", metavar="SUBCOMMAND", required=True)
    run = rsub.add_parser("run", help="run the relay in the foreground")
    run.add_argument("-c", "--config", required=True, help="relay config (TOML)")
    run.set_defaults(func=_cmd_relay_run)


# ------------------------------------------------------------------ for other relay front ends
def secret_path(settings: BaseModel | None, state_dir: str) -> Path:
    """Where a server's relay secret lives: ``[plugin.relay] secret_file`` or STATE_DIR/relay.secret.

    Other front ends of the same relay (``wss``) issue grants with the same secret.
    """
    if isinstance(settings, RelaySettings) and settings.secret_file:
        return Path(settings.secret_file)
    return Path(state_dir) / SECRET_FILE


def make_grant(secret: bytes, key_b64: str, networks: Sequence[str] = (),
               lifetime: int = GRANT_LIFETIME, **where: Any) -> RelayGrant:
    """A grant for the node ``key_b64`` on the relay sharing ``secret``, reached at ``where``,
    for its active ``networks``: the relay forwards only between nodes whose grants share
    one."""
    expires = int(time.time()) + lifetime
    tags = sorted(network_tag(n) for n in networks)
    token = make_token(secret, decode_public_key(key_b64), expires, tags)
    return RelayGrant(token=base64.b64encode(token).decode(), expires=expires,
                      tags=[t.hex() for t in tags], **where)
