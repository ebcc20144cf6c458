"""Prometheus metrics: the ``[metrics]`` endpoint of a node (and of the server).

Nothing here runs per packet. The engine already counts what matters (per
peer bytes and packets, drops by reason, handshakes); a custom collector reads
those counters when Prometheus scrapes, so the data path stays exactly as it
is. Exposition is prometheus-client's own (``generate_latest``; OpenMetrics
when the scraper asks for it), served on the node's event loop so the
collector reads live state without locks.

Node metrics (labels ``peer`` = name, ``public_key``)::

    shoal_node_info{name,version,public_key,virtual_ip}   1
    shoal_node_online                   control connection to the server is up (1/0)
    shoal_peer_online                   tunnel to the peer is live (1/0)
    shoal_peer_rx_bytes_total, shoal_peer_tx_bytes_total       payload bytes
    shoal_peer_rx_packets_total, shoal_peer_tx_packets_total   packets (keepalives included)
    shoal_peer_handshakes_total, shoal_peer_rekeys_total
    shoal_peer_rtt_seconds              round trip of the latest handshake we initiated
    shoal_peer_path_info{path,transport}  1 for the current path: direct | relay | none
    shoal_drops_total{reason}           the engine's DropCounters
    process_*                           CPU, memory, file descriptors of the process

Plugins add their own through ``shoal_metrics_register_collectors``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from shoal import __version__
from shoal.http_server import HttpServer, Request, Response
from shoal.path_report import peer_path

log = logging.getLogger(__name__)

PEER_LABELS = ("peer", "public_key")


class NodeCollector(Collector):
    """Reads a running ``Node``'s counters at scrape time."""

    def __init__(self, node: Any) -> None:
        self.node = node

    def collect(self) -> Iterable[Metric]:
        node = self.node
        ctl = node.control.state if node.control is not None else None
        info = InfoMetricFamily("shoal_node", "This node.")
        kp = node.keypair
        info.add_metric([], {"name": node.cfg.name, "version": __version__,
                             "public_key": kp.public_b64 if kp else "",
                             "virtual_ip": node.virtual_ip or ""})
        yield info
        yield GaugeMetricFamily("shoal_node_online",
                                "1 while the control connection to the server is up.",
                                value=1 if (ctl is None or ctl.online) else 0)
        eng = node.engine
        if eng is None:
            return
        yield from self._peers(eng)
        drops = CounterMetricFamily("shoal_drops", "Packets dropped by the engine, by reason.",
                                    labels=("reason",))
        for reason, n in eng.drop_counts().items():
            drops.add_metric([reason], n)
        yield drops

    def _peers(self, eng: Any) -> Iterator[Metric]:
        now = eng.clock()

        def counter(name: str, doc: str) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, labels=PEER_LABELS)

        online = GaugeMetricFamily("shoal_peer_online", "1 while the tunnel to the peer is live.",
                                   labels=PEER_LABELS)
        rx_b = counter("shoal_peer_rx_bytes", "Payload bytes received from the peer.")
        tx_b = counter("shoal_peer_tx_bytes", "Payload bytes sent to the peer.")
        rx_p = counter("shoal_peer_rx_packets", "Packets received from the peer.")
        tx_p = counter("shoal_peer_tx_packets", "Packets sent to the peer.")
        hs = counter("shoal_peer_handshakes", "Completed handshakes with the peer.")
        rk = counter("shoal_peer_rekeys", "Handshakes that replaced a working session.")
        rtt = GaugeMetricFamily("shoal_peer_rtt_seconds",
                                "Round trip of the latest handshake this node initiated.",
                                labels=PEER_LABELS)
        path = InfoMetricFamily("shoal_peer_path", "The peer's current path.",
                                labels=PEER_LABELS)
        for p in list(eng.peers.values()):
            labels = [p.name, p.public_key_b64]
            st = p.stats
            kind, transport = peer_path(p, now)
            online.add_metric(labels, 0 if kind == "none" else 1)
            rx_b.add_metric(labels, st.rx_bytes)
            tx_b.add_metric(labels, st.tx_bytes)
            rx_p.add_metric(labels, st.rx_packets)
            tx_p.add_metric(labels, st.tx_packets)
            hs.add_metric(labels, st.handshakes)
            rk.add_metric(labels, st.rekeys)
            if p.rtt_ms is not None:
                rtt.add_metric(labels, p.rtt_ms / 1000.0)
            path.add_metric(labels, {"path": kind, "transport": transport or ""})
        yield from (online, rx_b, tx_b, rx_p, tx_p, hs, rk, rtt, path)


class MetricsEndpoint:
    """``GET /metrics`` on ``listen``: everything in ``registry``."""

    def __init__(self, listen: str, registry: CollectorRegistry, name: str = "metrics") -> None:
        self.registry = registry
        self.http = HttpServer(listen, self._handle, name)

    async def start(self) -> None:
        await self.http.start()

    async def close(self) -> None:
        await self.http.close()

    async def _handle(self, req: Request) -> Response:
        if req.method not in ("GET", "HEAD"):
            return Response(405, b"method not allowed\n", headers=[("allow", "GET, HEAD")])
        if req.path == "/":
            return Response(200, b"Shoal metrics: /metrics\n")
        if req.path != "/metrics":
            return Response(404, b"not found: try /metrics\n")
        encoder, content_type = choose_encoder(req.header("accept"))
        # Read the live state here, on the loop (consistent, no locks); format the text
        # in a worker thread: formatting is most of a scrape's cost (thousands of
        # samples with many peers), and the packet path must not stall behind it.
        families = Collected(list(self.registry.collect()))
        body = await asyncio.get_running_loop().run_in_executor(None, encoder, families)
        return Response(200, b"" if req.method == "HEAD" else body, content_type)


class Collected:
    """Metric families already collected, offered to an encoder as a registry."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return iter(self.families)


def new_registry(*collectors: Collector) -> CollectorRegistry:
    """A registry of its own per endpoint (never the global one: several nodes may share
    a process in tests), with the process figures."""
    reg = CollectorRegistry()
    ProcessCollector(registry=reg)
    for c in collectors:
        reg.register(c)
    return reg


async def start_node_metrics(node: Any) -> MetricsEndpoint | None:
    """Start the node's ``[metrics]`` endpoint, if configured."""
    listen = node.cfg.metrics.listen
    if listen is None:
        return None
    reg = new_registry(NodeCollector(node))
    from shoal.plugin_context import PluginContext

    node.pm.hook.shoal_metrics_register_collectors(
        register=reg.register, context=PluginContext(node.cfg, node.settings))
    for slot in node.slots:
        for c in slot.plugin.collectors():
            reg.register(c)
    ep = MetricsEndpoint(listen, reg)
    await ep.start()
    return ep
