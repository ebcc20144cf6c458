"""The node's virtual interface: a tiny interface, a Linux TUN/TAP implementation.

The engine only needs a file descriptor it can poll and packet-at-a-time
``os.read``/``os.write`` on it, so ``TunDevice`` exposes exactly that.
An in-memory fake (a datagram socketpair) lives in ``shoal.testing``.

Offloads (TUN mode): the device is opened with IFF_VNET_HDR and TUNSETOFFLOAD
asks for checksum offload, TSO for IPv4/IPv6 and, where the kernel has it
(Linux 6.2), USO. Then every read and write carries a virtio-net header
(``shoal.offload.virtio``) and reads may be 64 KB super-packets. A kernel that
refuses TSO gets the device reopened without the header: one packet per
read, as without offloads. ``vnet_hdr`` and ``offloads`` say what is active.
"""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import os
import subprocess
from typing import Any, Protocol, runtime_checkable

from shoal.addressing import ULA_PREFIX_LEN, ipv6_for
from shoal.errors import ShoalError

log = logging.getLogger(__name__)

# linux/if_tun.h
TUNSETOFFLOAD = 0x400454D0
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08
TUN_F_USO4 = 0x20
TUN_F_USO6 = 0x40
TSO = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN
USO = TUN_F_USO4 | TUN_F_USO6
OFFLOAD_NAMES = {TUN_F_CSUM: "csum", TUN_F_TSO4: "tso4", TUN_F_TSO6: "tso6",
                 TUN_F_TSO_ECN: "tso_ecn", TUN_F_USO4: "uso4", TUN_F_USO6: "uso6"}


@runtime_checkable
class TunDevice(Protocol):
    name: str
    mtu: int
    #: True when every read and write carries a virtio-net header.
    vnet_hdr: bool
    #: Names of the offloads the kernel accepted (``OFFLOAD_NAMES``), empty without.
    offloads: list[str]

    def fileno(self) -> int: ...

    def close(self) -> None: ...


class LinuxTun:
    """A kernel TUN (IFF_TUN) or TAP (IFF_TAP) device without packet info, non-blocking.

    The device is not persistent: closing the descriptor removes it, so a node
    that exits (cleanly or not) leaves no interface behind.
    """

    def __init__(self, name: str, address: str | None, mtu: int, mode: str = "tun",
                 mac: bytes | None = None, offload: bool = False) -> None:
        try:
            import pytun
        except ImportError as e:  # pragma: no cover - dependency of the distribution
            raise ShoalError("python-pytun is missing: pip install python-pytun") from e
        flags = (pytun.IFF_TAP if mode == "tap" else pytun.IFF_TUN) | pytun.IFF_NO_PI
        self.vnet_hdr = False
        self.offloads: list[str] = []
        want = offload and mode == "tun"
        self._dev = self._open(pytun, name, flags | (pytun.IFF_VNET_HDR if want else 0))
        if want:
            accepted = enable_offloads(self._dev.fileno())
            if accepted:
                self.vnet_hdr = True
                self.offloads = [n for bit, n in OFFLOAD_NAMES.items() if accepted & bit]
            else:
                log.info("interface %s: the kernel refused TSO; running without offloads", name)
                self._dev.close()
                self._dev = self._open(pytun, name, flags)
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
        log.info("interface %s up (%s, mtu %d, %s, offloads: %s)", self.name, mode, mtu,
                 address or "no address", " ".join(self.offloads) or "none")

    @staticmethod
    def _open(pytun: Any, name: str, flags: int) -> Any:
        try:
            return pytun.TunTapDevice(name=name, flags=flags)
        except pytun.Error as e:
            raise ShoalError(
                f"cannot create interface {name!r}: {e}; run as root (or with CAP_NET_ADMIN) "
                "and check that /dev/net/tun exists") from None

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


def enable_offloads(fd: int) -> int:
    """Ask for TSO (and USO where the kernel has it) on a TUN fd; the flags accepted, or 0."""
    for flags in (TSO | USO, TSO, TSO & ~TUN_F_TSO_ECN):
        try:
            fcntl.ioctl(fd, TUNSETOFFLOAD, flags)
            return flags
        except OSError:
            continue
    return 0
