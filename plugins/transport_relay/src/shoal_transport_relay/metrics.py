"""Prometheus figures of the relay: the service (in the server or standalone) and a
node's relay client.

Read from the relay's own ``RelayCounters`` and the client's state at scrape
time; nothing is added to the forwarding path.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from shoal_transport_relay.client import RelayClient
from shoal_transport_relay.protocol import RelayCore
from shoal_transport_relay.revocations import RevocationPusher


class RelayCollector(Collector):
    def __init__(self, core: RelayCore) -> None:
        self.core = core

    def collect(self) -> Iterable[Metric]:
        c = self.core.counters
        yield CounterMetricFamily("shoal_relay_forwarded_bytes",
                                  "Bytes of sealed packets forwarded between nodes.",
                                  value=c.forwarded_bytes)
        yield CounterMetricFamily("shoal_relay_forwarded_packets",
                                  "Sealed packets forwarded between nodes.", value=c.forwarded)
        drops = CounterMetricFamily("shoal_relay_dropped", "Packets the relay dropped, by reason.",
                                    labels=("reason",))
        for reason, n in (("malformed", c.dropped_malformed),
                          ("unregistered", c.dropped_unregistered),
                          ("no_destination", c.dropped_no_destination),
                          ("no_shared_network", c.dropped_no_shared_network),
                          ("rate", c.dropped_rate), ("refused", c.refused)):
            drops.add_metric([reason], n)
        yield drops
        yield GaugeMetricFamily("shoal_relay_registrations", "Nodes registered with the relay.",
                                value=len(self.core.by_id))
        yield CounterMetricFamily("shoal_relay_revocations",
                                  "Revocations applied (logouts, evictions, pushed REVOKEs).",
                                  value=c.revoked)


class RevocationPushCollector(Collector):
    """A server's pushes of revocations to the standalone relays it announces."""

    def __init__(self, pusher: RevocationPusher) -> None:
        self.pusher = pusher

    def collect(self) -> Iterable[Metric]:
        p = self.pusher
        pushed = CounterMetricFamily("shoal_relay_revocation_pushes",
                                     "Revocations pushed to standalone relays, by outcome.",
                                     labels=("outcome",))
        for outcome, n in (("confirmed", p.confirmed), ("unconfirmed", p.unconfirmed),
                           ("skipped", p.skipped)):
            pushed.add_metric([outcome], n)
        yield pushed


class RelayClientCollector(Collector):
    """A node's relay client: usable or not, over which protocol, how far."""

    def __init__(self, client: RelayClient) -> None:
        self.client = client

    def collect(self) -> Iterable[Metric]:
        c = self.client
        yield GaugeMetricFamily("shoal_relay_client_ready", "1 while the relay is usable.",
                                value=1 if c.ready else 0)
        info = InfoMetricFamily("shoal_relay_client", "The relay this node uses.")
        info.add_metric([], {"relay": c.relay or "", "mode": c.mode or ""})
        yield info
        if c.rtt_ms is not None:
            yield GaugeMetricFamily("shoal_relay_client_rtt_seconds",
                                    "Round trip to the relay when it was reached.",
                                    value=c.rtt_ms / 1000.0)
        yield CounterMetricFamily("shoal_relay_client_refused",
                                  "Registrations the relay refused.", value=c.refused)
