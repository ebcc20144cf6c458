"""Count IPX frames crossing a TAP interface, by framing and direction, off the data path.

The engine carries IPX frames like any other Ethernet frame (by MAC; group
addresses through the broadcast plugin). To see them without adding work to
the engine's loop, this opens a packet socket on the interface with a
classic BPF filter that lets through only EtherType 0x8137 and 802.3 length
frames (where the other three framings live), truncated to 64 bytes; the
kernel drops everything else before it reaches Python.

Direction: frames the host sends into the interface (``PACKET_OUTGOING``) are
``tx`` (towards the peers); frames the engine writes into it are ``rx``.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import socket
import struct

from shoal_frames_ipx.framing import IpxFraming, classify

log = logging.getLogger(__name__)

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
PACKET_OUTGOING = 4
SNAPLEN = 64

# ldh [12]; jeq #0x8137 -> accept; jgt #1500 -> drop; accept: ret #64; drop: ret #0
_BPF = [(0x28, 0, 0, 12), (0x15, 1, 0, 0x8137), (0x25, 1, 0, 1500),
        (0x06, 0, 0, SNAPLEN), (0x06, 0, 0, 0)]


def _attach_filter(sock: socket.socket) -> None:
    prog = b"".join(struct.pack("HBBI", *insn) for insn in _BPF)
    buf = ctypes.create_string_buffer(prog)
    fprog = struct.pack("HP", len(_BPF), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


class IpxFrameCounter:
    def __init__(self) -> None:
        self.counts: dict[str, dict[str, int]] = {
            d: {f.value: 0 for f in IpxFraming} for d in ("rx", "tx")}
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def count(self, frame: bytes, outgoing: bool) -> None:
        f = classify(frame)
        if f is not None:
            self.counts["tx" if outgoing else "rx"][f.value] += 1

    def start(self, ifname: str) -> None:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            _attach_filter(s)
            s.bind((ifname, ETH_P_ALL))
            s.setblocking(False)
        except OSError:
            s.close()
            raise
        self._sock = s
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(s.fileno(), self._readable)
        log.info("ipx: counting IPX frames on %s", ifname)

    def _readable(self) -> None:
        s = self._sock
        if s is None:
            return
        for _ in range(256):
            try:
                frame, addr = s.recvfrom(SNAPLEN)
            except OSError:
                return
            self.count(frame, addr[2] == PACKET_OUTGOING)

    def close(self) -> None:
        if self._sock is not None:
            if self._loop is not None:
                try:
                    self._loop.remove_reader(self._sock.fileno())
                except (ValueError, OSError):
                    pass
            self._sock.close()
            self._sock = None
