"""Relay metrics: the collector reads the relay's counters; a standalone ``shoal relay run``
with ``[metrics]`` serves them (loopback only)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from shoal.metrics import new_registry
from shoal_transport_relay.metrics import RelayCollector
from shoal_transport_relay.plugin import StandaloneRelayConfig
from shoal_transport_relay.protocol import RelayCore

SHOAL = str(Path(sys.executable).with_name("shoal"))


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_collector_reads_the_relay_counters() -> None:
    core = RelayCore(b"k" * 32)
    core.counters.forwarded, core.counters.forwarded_bytes = 3, 4200
    core.counters.dropped_rate = 2
    s = _samples(generate_latest(new_registry(RelayCollector(core))).decode())
    assert s[("shoal_relay_forwarded_bytes_total", ())] == 4200
    assert s[("shoal_relay_forwarded_packets_total", ())] == 3
    assert s[("shoal_relay_dropped_total", (("reason", "rate"),))] == 2
    assert s[("shoal_relay_dropped_total", (("reason", "malformed"),))] == 0
    assert s[("shoal_relay_registrations", ())] == 0


def test_client_collector() -> None:
    from shoal.transport import Readiness
    from shoal_transport_relay.client import RelayClient
    from shoal_transport_relay.metrics import RelayClientCollector

    c = RelayClient(b"k" * 32)
    s = _samples(generate_latest(new_registry(RelayClientCollector(c))).decode())
    assert s[("shoal_relay_client_ready", ())] == 0
    c.mode, c.relay, c.rtt_ms = "udp", "203.0.113.10:3480", 2.5
    c.set_readiness(Readiness.READY, "test")
    s = _samples(generate_latest(new_registry(RelayClientCollector(c))).decode())
    assert s[("shoal_relay_client_ready", ())] == 1
    assert s[("shoal_relay_client_rtt_seconds", ())] == 0.0025
    assert s[("shoal_relay_client_info", (("mode", "udp"), ("relay", "203.0.113.10:3480")))] == 1


def test_standalone_relay_config_metrics() -> None:
    cfg = StandaloneRelayConfig.model_validate({"secret_file": "/x", "metrics": {}})
    assert cfg.metrics.listen is None
    with pytest.raises(ValueError, match="metrics.listen"):
        StandaloneRelayConfig.model_validate({"secret_file": "/x",
                                              "metrics": {"listen": "nowhere"}})
    with pytest.raises(ValueError, match="metrics.bind"):
        StandaloneRelayConfig.model_validate({"secret_file": "/x",
                                              "metrics": {"bind": "127.0.0.1:1"}})


def test_standalone_relay_serves_metrics(tmp_path) -> None:
    secret = tmp_path / "relay.secret"
    secret.write_bytes(os.urandom(32))
    secret.chmod(0o600)
    mport = _free_port()
    cfg = tmp_path / "relay.toml"
    cfg.write_text(f'secret_file = "{secret}"\nlisten_udp = "127.0.0.1:{_free_port(socket.SOCK_DGRAM)}"\n'
                   f'[metrics]\nlisten = "127.0.0.1:{mport}"\n')
    p = subprocess.Popen([SHOAL, "relay", "run", "-c", str(cfg)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics",
                                              timeout=2).read().decode()
                break
            except OSError:
                assert p.poll() is None, p.stderr.read().decode() if p.stderr else ""
                assert time.monotonic() < deadline, "the relay's metrics never answered"
                time.sleep(0.1)
        s = _samples(body)
        assert s[("shoal_relay_forwarded_bytes_total", ())] == 0
        assert ("process_resident_memory_bytes", ()) in s
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
