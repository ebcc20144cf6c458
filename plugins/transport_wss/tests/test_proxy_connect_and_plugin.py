"""HTTP CONNECT codec, grants from the welcome, and the per-node plugin object."""

import base64
import os

import pytest

from shoal.control import messages as m
from shoal.testing.fakes import FakeNodeHandle
from shoal.transport import PathKind, Readiness

from shoal_transport_wss.plugin import WssNodePlugin, grant_from
from shoal_transport_wss.proxy_connect import connect_request, parse_reply
from shoal_transport_wss.settings import WssSettings


def test_connect_request_and_reply():
    assert connect_request("203.0.113.10", 443) == (
        b"CONNECT 203.0.113.10:443 HTTP/1.1\r\nHost: 203.0.113.10:443\r\n\r\n")
    auth = connect_request("203.0.113.10", 443, "user", "p%40ss")
    assert b"Proxy-Authorization: Basic " + base64.b64encode(b"user:p@ss") in auth
    assert parse_reply(b"HTTP/1.1 200 Connection established\r\n\r\n") == (
        200, "Connection established")
    assert parse_reply(b"HTTP/1.0 403\r\n\r\n") == (403, "")
    for junk in (b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 abc\r\n\r\n", b"\r\n\r\n"):
        with pytest.raises(ValueError):
            parse_reply(junk)


def grant(**endpoints: str) -> m.RelayGrant:
    return m.RelayGrant(udp="203.0.113.10:3480", token=base64.b64encode(b"t" * 32).decode(),
                        expires=123, endpoints=endpoints)


def test_grant_from_the_welcome_needs_url_and_pin():
    assert grant_from([grant()]) is None
    assert grant_from([grant(wss="wss://203.0.113.10:443/shoal/relay")]) is None
    g = grant_from([grant(), grant(wss="wss://x:443/shoal/relay", **{"wss-pin": "sha256:ab"})])
    assert g is not None and g.url == "wss://x:443/shoal/relay" and g.token == b"t" * 32
    assert g.fingerprint == "sha256:ab" and g.expires == 123


def test_node_plugin_offers_one_relayed_transport_and_a_dialer_only_with_a_proxy():
    plain = WssNodePlugin(FakeNodeHandle("wss"))
    (t,) = plain.transports()
    assert t.kind is PathKind.RELAYED and t.readiness is Readiness.STARTING
    assert t.endpoint_for(os.urandom(32))[0] == "relay"
    assert plain.control_dialer() is None
    status: dict = {}
    plain.status(status)
    assert status["wss"]["state"] == "idle" and status["wss"]["proxy"] is None
    proxied = WssNodePlugin(FakeNodeHandle(
        "wss", settings=WssSettings(proxy="http://user:pw@198.51.100.30:8888")))
    assert proxied.control_dialer() is not None
    status = {}
    proxied.status(status)
    assert status["wss"]["proxy"] == "http://198.51.100.30:8888"   # no credentials
