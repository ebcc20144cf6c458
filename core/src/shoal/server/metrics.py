"""Prometheus metrics of the coordination server (``[metrics] listen``).

Counts and sizes are read at scrape time from what the server keeps anyway
(``ServerCounters``, the coordinator's state). Two latencies are measured as
they happen, on the control plane only, into prometheus-client histograms:

* presence fan-out: from the moment a node's presence changes (login,
  logout, new candidates/NAT report) until every message it causes has been
  handed to its recipients' send queues (the coordinator's work plus the
  delivery, the part that grows with network size);
* store: each call through the ``Store`` interface (SQLite or PostgreSQL),
  labelled with the operation.

Server metrics::

    shoal_server_info{version,public_key}                 1
    shoal_server_connections_total, shoal_server_logins_total
    shoal_server_control_errors_total{reason}   bad_handshake, bad_message, timeout, slow_consumer
    shoal_server_sessions                       control connections to this server
    shoal_server_nodes_online, shoal_server_nodes, shoal_server_networks
    shoal_server_members{status}                active, pending
    shoal_server_presence_fanout_seconds{event}  histogram: login, logout, report
    shoal_server_presence_messages_total{event}  messages those changes fanned out
    shoal_server_store_seconds{op}              histogram

The relay plugin adds ``shoal_relay_*`` when the server runs a relay.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from shoal import __version__
from shoal.metrics import MetricsEndpoint, new_registry

#: Presence fan-out: sub-millisecond for small networks, up to seconds for huge ones.
FANOUT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                  0.25, 0.5, 1.0, 2.5, float("inf"))
STORE_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                 0.1, 0.25, 1.0, float("inf"))


class ServerTimings:
    """Latency histograms the server feeds as events happen (not registered globally)."""

    def __init__(self) -> None:
        self.fanout = Histogram("shoal_server_presence_fanout_seconds",
                                "Presence change to all its messages queued for delivery.",
                                labelnames=("event",), buckets=FANOUT_BUCKETS, registry=None)
        self.fanout_messages = Counter("shoal_server_presence_messages",
                                       "Messages fanned out by presence changes.",
                                       labelnames=("event",), registry=None)
        self.store = Histogram("shoal_server_store_seconds", "Duration of store operations.",
                               labelnames=("op",), buckets=STORE_BUCKETS, registry=None)
        for event in ("login", "logout", "report"):  # present from the first scrape
            self.fanout.labels(event)
            self.fanout_messages.labels(event)

    def presence(self, event: str, started: float, messages: int) -> None:
        """A presence change whose fan-out began at ``started`` (``time.perf_counter``)."""
        self.fanout.labels(event).observe(time.perf_counter() - started)
        self.fanout_messages.labels(event).inc(messages)

    def collect(self) -> Iterable[Metric]:
        yield from self.fanout.collect()
        yield from self.fanout_messages.collect()
        yield from self.store.collect()


class TimedStore:
    """A ``Store`` that times every call of the store it wraps.

    Only the store interface's methods are timed; anything else passes through.
    Coroutine methods (an asynchronous store) are timed until they complete.
    """

    def __init__(self, inner: Any, histogram: Histogram) -> None:
        self._inner = inner
        self._histogram = histogram

    @property
    def inner(self) -> Any:
        return self._inner

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name.startswith("_") or not callable(attr):
            return attr
        child = self._histogram.labels(name)
        if inspect.iscoroutinefunction(attr):
            @functools.wraps(attr)
            async def timed_async(*a: Any, **kw: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return await attr(*a, **kw)
                finally:
                    child.observe(time.perf_counter() - t0)
            wrapped: Any = timed_async
        else:
            @functools.wraps(attr)
            def timed(*a: Any, **kw: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return attr(*a, **kw)
                finally:
                    child.observe(time.perf_counter() - t0)
            wrapped = timed
        setattr(self, name, wrapped)  # cached: __getattr__ runs once per method
        return wrapped


class ServerCollector(Collector):
    """Reads a running ``Server`` at scrape time."""

    def __init__(self, server: Any) -> None:
        self.server = server

    def collect(self) -> Iterable[Metric]:
        srv = self.server
        coord = srv.coord
        info = InfoMetricFamily("shoal_server", "This coordination server.")
        info.add_metric([], {"version": __version__, "public_key": srv.keypair.public_b64})
        yield info
        c = srv.counters
        yield CounterMetricFamily("shoal_server_connections", "Control connections accepted.",
                                  value=c.connections)
        yield CounterMetricFamily("shoal_server_logins", "Successful logins.", value=c.logins)
        errors = CounterMetricFamily("shoal_server_control_errors",
                                     "Control connections closed for a fault, by reason.",
                                     labels=("reason",))
        for reason, n in (("bad_handshake", c.bad_handshakes), ("bad_message", c.bad_messages),
                          ("timeout", c.timeouts), ("slow_consumer", c.slow_consumers),
                          ("refused", c.refused_connections),
                          ("shed_handshake", srv.handshakes.shed)):
            errors.add_metric([reason], n)
        yield errors
        yield GaugeMetricFamily("shoal_server_sessions", "Control connections to this server.",
                                value=len(srv.sessions))
        yield GaugeMetricFamily("shoal_server_nodes_online", "Nodes online.",
                                value=len(coord.online))
        yield GaugeMetricFamily("shoal_server_nodes", "Nodes known (ever logged in).",
                                value=len(coord.nodes))
        yield GaugeMetricFamily("shoal_server_networks", "Networks.", value=len(coord.networks))
        members = GaugeMetricFamily("shoal_server_members", "Network memberships, by status.",
                                    labels=("status",))
        counts = {"active": 0, "pending": 0}
        for by_key in coord.members.values():
            for mem in by_key.values():
                counts[mem.status] = counts.get(mem.status, 0) + 1
        for status, n in counts.items():
            members.add_metric([status], n)
        yield members
        yield from srv.timings.collect()


async def start_server_metrics(server: Any) -> MetricsEndpoint | None:
    """Start the server's ``[metrics]`` endpoint, if configured."""
    listen = server.cfg.metrics.listen
    if listen is None:
        return None
    reg = new_registry(ServerCollector(server), *server.collectors)
    ep = MetricsEndpoint(listen, reg, "server metrics")
    await ep.start()
    return ep
