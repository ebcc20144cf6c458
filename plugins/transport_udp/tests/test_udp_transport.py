"""The udp plugin: settings, the transport it offers, datagrams over loopback."""

from __future__ import annotations

import asyncio
import socket

import pytest
from pydantic import ValidationError
from shoal.errors import ShoalError
from shoal.plugins import list_plugins, load_plugins
from shoal.testing.fakes import FakeNodeHandle
from shoal.transport import Delivery, PathKind, Readiness
from shoal_transport_udp.plugin import UdpPlugin, UdpSettings, UdpTransport


def test_registered_under_its_entry_point():
    assert "udp" in {i.name for i in list_plugins()}
    assert load_plugins(["udp"]).has_plugin("udp")


def test_settings_are_validated():
    assert UdpSettings(port=0).port == 0
    for bad in ({"port": 70000}, {"listen": "::"}, {"socket_buffer": 10}, {"prot": 1}):
        with pytest.raises(ValidationError):
            UdpSettings.model_validate(bad)


def test_plugin_offers_the_main_direct_transport():
    node = FakeNodeHandle("udp", settings=UdpSettings(port=0, listen="127.0.0.1"))
    [t] = UdpPlugin(node).transports()
    assert (t.name, t.kind, t.delivery) == ("udp", PathKind.DIRECT, Delivery.DATAGRAM)
    assert t.readiness is Readiness.STARTING
    with pytest.raises(OSError):
        t.send(b"x", ("127.0.0.1", 9))


def test_datagrams_over_loopback_and_readiness():
    async def main() -> None:
        loop = asyncio.get_running_loop()
        got: asyncio.Queue = asyncio.Queue()
        a = UdpTransport(UdpSettings(port=0, listen="127.0.0.1"))
        b = UdpTransport(UdpSettings(port=0, listen="127.0.0.1"))
        await a.start(loop, lambda d, ep: None)
        await b.start(loop, lambda d, ep: got.put_nowait((d, ep)))
        assert a.readiness is Readiness.READY
        b_port = int(b.local_endpoints()[0].rpartition(":")[2])
        a.send(b"sealed", ("127.0.0.1", b_port))
        data, ep = await asyncio.wait_for(got.get(), 5)
        assert data == b"sealed" and ep[0] == "127.0.0.1"
        assert b.candidates() == [f"127.0.0.1:{b_port}"]
        a.close()
        b.close()

    asyncio.run(main())


def test_a_port_in_use_is_one_clear_error():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    try:
        t = UdpTransport(UdpSettings(port=s.getsockname()[1], listen="127.0.0.1"))

        async def main() -> None:
            await t.start(asyncio.get_running_loop(), lambda d, ep: None)

        with pytest.raises(ShoalError, match=r"set \[plugin.udp\] port"):
            asyncio.run(main())
    finally:
        s.close()
