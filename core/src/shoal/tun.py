"""The node's virtual interface: a tiny interface, a Linux TUN/TAP implementation.

The engine only needs a file descriptor it can poll and packet-at-a-time
``os.read``/``os.write`` on it, so ``TunDevice`` exposes exactly that.
An in-memory fake (a datagram socketpair) lives in ``shoal.testing``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import subprocess
from typing import Protocol, runtime_checkable

from shoal.addressing import ULA_PREFIX_LEN, ipv6_for
from shoal.errors import ShoalError

log = logging.getLogger(__name__)


@runtime_checkable
class TunDevice(Protocol):
    name: str
    mtu: int

    def fileno(self) -> int: ...

    def close(self) -> None: ...


class LinuxTun:
    """A kernel TUN (IFF_TUN) or TAP (IFF_TAP) device without packet info, non-blocking.

    The device is not persistent: closing the descriptor removes it, so a node
    that exits (cleanly or not) leaves no interface behind.
    """

    def __init__(self, name: str, address: str | None, mtu: int, mode: str = "tun",
                 mac: bytes | None = None) -> None:
        try:
            import pytun
        except ImportError as e:  # pragma: no cover - dependency of the distribution
            raise ShoalError("python-pytun is missing: pip install python-pytun") from e
        flags = (pytun.IFF_TAP if mode == "tap" else pytun.IFF_TUN) | pytun.IFF_NO_PI
        try:
            self._dev = pytun.TunTapDevice(name=name, flags=flags)
        except pytun.Error as e:
            raise ShoalError(
                f"cannot create interface {name!r}: {e}; run as root (or with CAP_NET_ADMIN) "
                "and check that /dev/net/tun exists") from None
        self.name = self._dev.name
        self.mode = mode
        self.mtu = mtu
        self._dev.mtu = mtu
        if mac is not None and mode == "tap":
            self._dev.hwaddr = mac
        self._dev.up()
        if address:
            self.set_address(address)
        os.set_blocking(self._dev.fileno(), False)
        log.info("interface %s up (%s, mtu %d, %s)", self.name, mode, mtu, address or "no address")

    def fileno(self) -> int:
        return self._dev.fileno()

    def set_address(self, address: str) -> None:
        """Set the IPv4 overlay address and its IPv6 twin (see ``addressing``)."""
        iface = ipaddress.ip_interface(address)
        self._dev.addr = str(iface.ip)
        self._dev.netmask = str(iface.netmask)
        v6 = f"{ipv6_for(str(iface.ip))}/{ULA_PREFIX_LEN}"
        r = subprocess.run(["ip", "-6", "addr", "replace", v6, "dev", self.name, "nodad"],
                           capture_output=True, text=True)
        if r.returncode != 0:  # IPv6 disabled on this host: IPv4 still works
            log.warning("interface %s: no IPv6 overlay address: %s", self.name, r.stderr.strip())

    def close(self) -> None:
        try:
            self._dev.close()
        except OSError:  # already closed
            pass
