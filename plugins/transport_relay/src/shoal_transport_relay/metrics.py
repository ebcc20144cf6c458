"""Prometheus figures of a relay running inside the coordination server.

Read from the relay's own ``RelayCounters`` at scrape time; nothing is added
to the forwarding path.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from shoal_transport_relay.protocol import RelayCore


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
                          ("rate", c.dropped_rate), ("refused", c.refused)):
            drops.add_metric([reason], n)
        yield drops
        yield GaugeMetricFamily("shoal_relay_registrations", "Nodes registered with the relay.",
                                value=len(self.core.by_id))
