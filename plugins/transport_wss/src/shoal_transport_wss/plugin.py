"""Entry point ``wss``: the relay over WebSocket/TLS (node transport and server listener).

Node side: a ``WssClient`` transport; it connects once the node logs in and the
coordination server hands it a grant naming a wss relay and its certificate
fingerprint (``RelayGrant.endpoints["wss"]`` and ``["wss-pin"]``). With
``[plugin.wss] proxy`` both the relay connection and the control connection to
the coordination server go through that HTTP CONNECT proxy.

Server side (``plugins = ["relay", "wss"]`` and ``[plugin.wss] listen``): a WSS
listener attached to the in-server relay (or to a relay core of its own when the
server runs no UDP/TCP relay), a self-signed certificate in ``state_dir``, and a
grant for it in every node's welcome, signed with the relay's secret.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shoal.config import parse_endpoint
from shoal.control import messages as m
from shoal.control.client import Dialer
from shoal.hookspecs import hookimpl
from shoal.plugin_api import NodeHandle, NodePlugin
from shoal.plugin_context import PluginContext
from shoal.transport import Transport, require_contract

from shoal_transport_relay.plugin import GRANT_LIFETIME, make_grant, secret_path
from shoal_transport_relay.service import RelayService, load_secret
from shoal_transport_wss import pinning
from shoal_transport_wss.client import WssClient, WssGrant
from shoal_transport_wss.listener import WssListener
from shoal_transport_wss.proxy_connect import open_through_proxy
from shoal_transport_wss.settings import WssSettings

log = logging.getLogger(__name__)

CERT_FILE, KEY_FILE = "wss-cert.pem", "wss-key.pem"
#: keys of ``RelayGrant.endpoints`` this plugin uses
URL_KEY, PIN_KEY = "wss", "wss-pin"


@hookimpl
def shoal_config_register_settings(register):  # type: ignore[no-untyped-def]
    register("wss", WssSettings)


def grant_from(relays: Sequence[m.RelayGrant]) -> WssGrant | None:
    """The first grant that names a wss relay (and its pin), in the plugin's own terms."""
    for g in relays:
        url, pin = g.endpoints.get(URL_KEY), g.endpoints.get(PIN_KEY)
        if url and pin:
            return WssGrant(url, pin, base64.b64decode(g.token), g.expires,
                            tuple(bytes.fromhex(t) for t in g.tags))
    return None


# ------------------------------------------------------------------ node side
class WssNodePlugin(NodePlugin):
    """One node's WSS client."""

    def __init__(self, node: NodeHandle) -> None:
        require_contract((1, 1), "wss")
        self.settings = node.settings(WssSettings)
        self.client = WssClient(node.keypair.public, self.settings.proxy)

    def transports(self) -> list[Transport]:
        return [self.client]

    def on_login(self, welcome: m.Welcome) -> None:
        grant = grant_from(welcome.relays)
        if grant is None:
            log.warning("wss: the coordination server announces no wss relay "
                        "(server: plugins = [\"relay\", \"wss\"] and [plugin.wss] listen)")
            return
        self.client.use_grant(grant)

    def on_grants(self, grants: m.Grants) -> None:
        grant = grant_from(grants.relays)
        if grant is not None:
            self.client.use_grant(grant)

    def control_dialer(self) -> Dialer | None:
        proxy = self.settings.proxy
        if proxy is None:
            return None

        async def dial(host: str, port: int
                       ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            return await open_through_proxy(proxy, host, port)

        return dial

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
    fp = pinning.fingerprint(pinning.ensure_certificate(cert, key,
                                                        parse_endpoint(settings.listen)[0]))
    listener = WssListener(settings.listen, pinning.server_context(cert, key),
                           max_connections=settings.max_connections)
    url = settings.announced_url()

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
    lifetime = getattr(context.settings_for("relay"), "grant_lifetime", GRANT_LIFETIME)
    server.add_relay_granter(
        lambda key_b64, networks: make_grant(secret, key_b64, networks, lifetime,
                                             endpoints={URL_KEY: url, PIN_KEY: fp}))
    log.info("wss relay %s, certificate %s (%s)", url, fp, cert)
