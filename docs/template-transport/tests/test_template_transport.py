"""Unit tests of the template transport, on Shoal's in-memory fakes (``shoal.testing``)."""

from __future__ import annotations

import asyncio
import socket

import pytest
from pydantic import ValidationError
from shoal.errors import ShoalError
from shoal.testing.fakes import FakeNodeHandle
from shoal.transport import Delivery, PathKind, Readiness, Transport
from shoal_transport_template.plugin import TemplatePlugin, TemplateSettings
from shoal_transport_template.transport import TemplateTransport


def test_settings_are_validated():
    assert TemplateSettings(port=0).port == 0
    with pytest.raises(ValidationError):
        TemplateSettings(port=70000)
    with pytest.raises(ValidationError):
        TemplateSettings.model_validate({"prot": 1})      # typo: unknown key
    with pytest.raises(ValidationError):
        TemplateSettings(listen="::1")


def test_plugin_offers_one_direct_datagram_transport():
    node = FakeNodeHandle("template", settings=TemplateSettings(port=0, listen="127.0.0.1"))
    plugin = TemplatePlugin(node)
    [t] = plugin.transports()
    assert isinstance(t, Transport)
    assert (t.name, t.kind, t.delivery) == ("template", PathKind.DIRECT, Delivery.DATAGRAM)
    assert t.readiness is Readiness.STARTING
    with pytest.raises(OSError):
        t.send(b"x", ("127.0.0.1", 9))     # not started: fails like an unreachable network


def test_two_transports_exchange_datagrams_and_report_readiness():
    async def main() -> None:
        loop = asyncio.get_running_loop()
        got: asyncio.Queue[tuple[bytes, object]] = asyncio.Queue()
        changes: list[tuple[str, str]] = []
        a = TemplateTransport("127.0.0.1", 0)
        b = TemplateTransport("127.0.0.1", 0)
        a.watch(lambda t, old, new, why: changes.append((old.value, new.value)))
        await a.start(loop, lambda d, ep: None)
        await b.start(loop, lambda d, ep: got.put_nowait((d, ep)))
        assert a.readiness is Readiness.READY and changes == [("starting", "ready")]
        a.send(b"sealed datagram", ("127.0.0.1", b.bound_port))
        data, ep = await asyncio.wait_for(got.get(), 5)
        assert data == b"sealed datagram" and ep == ("127.0.0.1", a.bound_port)
        assert b.candidates() == [f"127.0.0.1:{b.bound_port}"]
        assert b.parse_endpoint(b.candidates()[0]) == ("127.0.0.1", b.bound_port)
        a.close()
        b.close()

    asyncio.run(main())


def test_a_port_in_use_is_one_clear_error():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    try:
        t = TemplateTransport("127.0.0.1", s.getsockname()[1])

        async def main() -> None:
            await t.start(asyncio.get_running_loop(), lambda d, ep: None)

        with pytest.raises(ShoalError, match=r"set \[plugin.template\] port"):
            asyncio.run(main())
    finally:
        s.close()
