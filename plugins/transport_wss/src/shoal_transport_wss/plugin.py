"""Entry point ``wss``: the relay over WebSocket/TLS (node transport and server listener).

Node side: a ``WssClient`` transport; it connects once the node logs in and the
coordination server hands it a grant naming a wss relay and its certificate
fingerprint. ``[plugin.wss] proxy`` sends it through an HTTP CONNECT proxy.

Server side (``plugins = ["relay", "wss"]`` and ``[plugin.wss] listen``): a WSS
listener attached to the in-server relay (or to a relay of its own when the
server runs no UDP/TCP relay), a self-signed certificate in ``state_dir``, and
a grant for it in every node's welcome, signed with the relay's secret.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from shoal.config import parse_endpoint
from shoal.hookspecs import hookimpl
from shoal.plugin_api import NodeHandle, NodePlugin
from shoal.plugin_context import PluginContext
from shoal.transport import Transport
from shoal_transport_relay.plugin import secret_path
from shoal_transport_relay.service import RelayService, load_secret

from shoal_transport_wss import pinning
from shoal_transport_wss.client import WssClient
from shoal_transport_wss.listener import WssListener
from shoal_transport_wss.settings import WssSettings

log = logging.getLogger(__name__)

CERT_FILE, KEY_FILE = "wss-cert.pem", "wss-key.pem"


@hookimpl
def shoal_config_register_settings(register):  # type: ignore[no-untyped-def]
    register("wss", WssSettings)


# ------------------------------------------------------------------ node side
class WssNodePlugin(NodePlugin):
    """The WSS client of one node."""

    def __init__(self, node: NodeHandle) -> None:
        self.client = WssClient(node.keypair.public, node.settings(WssSettings).proxy)

    def transports(self) -> list[Transport]:
        return [self.client]

    def status(self, status: dict[str, Any]) -> None:
        status["wss"] = self.client.status()


@hookimpl
def shoal_node_plugin(node: NodeHandle) -> WssNodePlugin:
    return WssNodePlugin(node)


# ------------------------------------------------------------------ server side
@hookimpl
def shoal_server_register_services(register, context: PluginContext) -> None:  # type: ignore[no-untyped-def]
    settings = context.settings_for("wss")
    server = context.server
    if not isinstance(settings, WssSettings) or server is None or settings.listen is None:
        return
    state_dir = Path(context.config.state_dir)
    secret = load_secret(secret_path(context.settings_for("relay"), str(state_dir)), create=True)
    cert = Path(settings.cert_file) if settings.cert_file else state_dir / CERT_FILE
    key = Path(settings.key_file) if settings.key_file else state_dir / KEY_FILE
    der = pinning.ensure_certificate(cert, key, parse_endpoint(settings.listen)[0])
    fp = pinning.fingerprint(der)
    ctx = pinning.server_context(cert, key)
    url = settings.announced_url()
    listener = WssListener(settings.listen, ctx, max_connections=settings.max_connections)

    async def run() -> None:
        # A front end of the in-server relay (relay plugin) when it runs, so nodes on
        # UDP, TCP and WSS reach each other; else of a relay core of its own.
        service = server.published("relay")
        if isinstance(service, RelayService):
            await listener.run(service)
            return
        service = RelayService(secret, None, None)
        await asyncio.gather(listener.run(service), service.run())

    register("wss", run)
    log.info("wss relay %s, certificate %s (%s)", url, fp, cert)
