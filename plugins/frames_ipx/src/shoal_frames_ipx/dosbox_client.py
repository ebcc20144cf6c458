"""A DOSBox-compatible IPXNET client, for tests, demos and checking a bridge by hand.

It behaves on the wire like DOSBox's ``ipxnet connect``: one UDP socket on an
ephemeral port, a registration to the echo socket with all addresses zero
(the node number comes back in the reply's destination), IPX datagrams with
its node as source, and an answer to every ``ipxnet ping`` (a broadcast to
socket 2) like DOSBox's own client gives.

Command line (prints one JSON object per line)::

    python -m shoal_frames_ipx.dosbox_client --server 127.0.0.1:213 \\
        [--broadcast TEXT] [--reply] [--ack] [--ping] [--duration SECONDS]

``--reply`` answers each broadcast with a unicast ``re:TEXT`` to its sender,
``--ack`` answers each such reply with a unicast ``ack:TEXT``.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time

from shoal.config import parse_endpoint

from shoal_frames_ipx.ipx_header import (
    BROADCAST_NODE,
    ECHO_SOCKET,
    IpxAddress,
    IpxHeader,
    MalformedIpx,
    decode,
    encode,
    format_node,
    ping_reply,
    ping_request,
    registration_request,
)

GAME_SOCKET = 0x4000


class IpxnetClient:
    def __init__(self, server: tuple[str, int], timeout: float = 5.0) -> None:
        self.server = server
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect(server)       # like DOSBox's channel bound to the server
        self.node: bytes | None = None
        self.network = b"\x00" * 4

    def close(self) -> None:
        self.sock.close()

    def register(self) -> bytes:
        """Register with the server; returns the node number it assigned."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            self.sock.send(registration_request())
            self.sock.settimeout(min(1.0, max(0.01, deadline - time.monotonic())))
            try:
                data = self.sock.recv(2048)
            except (TimeoutError, ConnectionRefusedError):
                time.sleep(0.1)  # no server yet (ICMP port unreachable): try again
                continue
            try:
                h, _ = decode(data)
            except MalformedIpx:
                continue
            if h.dest.socket == ECHO_SOCKET and h.src.socket == ECHO_SOCKET:
                self.node, self.network = h.dest.node, h.dest.network
                return h.dest.node
        raise TimeoutError(f"no IPXNET server answered at {self.server[0]}:{self.server[1]}")

    def send(self, dest_node: bytes, payload: bytes, dest_socket: int = GAME_SOCKET,
             src_socket: int = GAME_SOCKET) -> None:
        assert self.node is not None, "register first"
        self.sock.send(encode(IpxHeader(IpxAddress(self.network, dest_node, dest_socket),
                                        IpxAddress(self.network, self.node, src_socket)), payload))

    def recv(self, timeout: float) -> tuple[IpxHeader, bytes] | None:
        """The next datagram for the program; pings are answered on the way, like DOSBox."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(2048)
            except (TimeoutError, ConnectionRefusedError):
                continue
            try:
                h, payload = decode(data)
            except MalformedIpx:
                continue
            if h.dest.socket == ECHO_SOCKET and h.is_broadcast and self.node is not None:
                self.sock.send(ping_reply(h.src.node, self.node))
                continue
            return h, payload

    def ping(self, wait: float = 1.0) -> list[bytes]:
        """``ipxnet ping``: the nodes that answered within ``wait`` seconds."""
        assert self.node is not None, "register first"
        self.sock.send(ping_request(self.node))
        out = []
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            got = self.recv(left)
            if got is not None and got[0].dest.socket == ECHO_SOCKET:
                out.append(got[0].src.node)
        return out


def _emit(**kw: object) -> None:
    print(json.dumps(kw), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="dosbox_client", description=__doc__.split("\n")[0])
    ap.add_argument("--server", default="127.0.0.1:213")
    ap.add_argument("--broadcast", metavar="TEXT")
    ap.add_argument("--reply", action="store_true")
    ap.add_argument("--ack", action="store_true")
    ap.add_argument("--ping", action="store_true")
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--name", default="client")
    a = ap.parse_args(argv)
    c = IpxnetClient(parse_endpoint(a.server))
    try:
        node = c.register()
    except TimeoutError as e:
        print(f"dosbox_client: {e}", file=sys.stderr)
        return 1
    _emit(event="registered", name=a.name, node=format_node(node))
    if a.ping:
        _emit(event="ping", name=a.name, replies=[format_node(n) for n in c.ping()])
    if a.broadcast:
        c.send(BROADCAST_NODE, a.broadcast.encode())
    deadline = time.monotonic() + a.duration
    while (left := deadline - time.monotonic()) > 0:
        got = c.recv(left)
        if got is None:
            break
        h, payload = got
        text = payload.decode(errors="replace")
        _emit(event="rx", name=a.name, src=format_node(h.src.node), dst=format_node(h.dest.node),
              broadcast=h.is_broadcast, socket=h.dest.socket, payload=text)
        if a.reply and h.is_broadcast:
            c.send(h.src.node, b"re:" + payload)
        elif a.ack and not h.is_broadcast and text.startswith("re:"):
            c.send(h.src.node, b"ack:" + payload)
    c.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
