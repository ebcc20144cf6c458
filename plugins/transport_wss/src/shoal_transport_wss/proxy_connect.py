"""A TCP connection through an HTTP CONNECT proxy (RFC 9110 §9.3.6), for the control channel.

The relay connection goes through the proxy inside ``websockets``; the node's
control connection to the coordination server is plain TCP carrying its own
Noise channel (end-to-end authenticated, so the proxy learns nothing but the
address), and reaches the server through the same proxy with this.

    request   CONNECT host:port HTTP/1.1 CRLF Host: host:port CRLF
              [Proxy-Authorization: Basic ... CRLF] CRLF
    reply     HTTP/1.x 200 <reason> CRLF *(header CRLF) CRLF, then the tunnel

Any status other than 2xx is a refusal, reported as one line with the status.
The reply head is bounded (``MAX_HEAD``); nothing follows it before the client
speaks (Noise's initiator speaks first), so no tunnel bytes are lost.
"""

from __future__ import annotations

import asyncio
import base64
from urllib.parse import unquote, urlsplit

from shoal_transport_wss.settings import redact

MAX_HEAD = 8192


class ProxyRefused(OSError):
    """The proxy answered the CONNECT with a non-2xx status."""


def connect_request(host: str, port: int, user: str | None = None,
                    password: str | None = None) -> bytes:
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if user is not None:
        cred = f"{unquote(user)}:{unquote(password or '')}".encode()
        lines.append("Proxy-Authorization: Basic " + base64.b64encode(cred).decode())
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse_reply(head: bytes) -> tuple[int, str]:
    """(status, reason) of the reply's status line; ValueError when it is not HTTP."""
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP reply: {line[:60]!r}")
    return int(parts[1]), parts[2].strip() if len(parts) > 2 else ""


async def open_through_proxy(proxy: str, host: str, port: int, timeout: float = 5.0
                             ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP stream to ``host:port`` tunnelled through the HTTP proxy ``proxy``."""
    u = urlsplit(proxy)
    assert u.hostname is not None and u.port is not None
    reader, writer = await asyncio.wait_for(asyncio.open_connection(u.hostname, u.port),
                                            timeout)
    try:
        writer.write(connect_request(host, port, u.username, u.password))
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        except asyncio.LimitOverrunError:
            raise OSError(f"proxy {redact(proxy)}: reply head too long") from None
        except asyncio.IncompleteReadError:
            raise ConnectionError(f"proxy {redact(proxy)} closed the connection") from None
        if len(head) > MAX_HEAD:
            raise OSError(f"proxy {redact(proxy)}: reply head too long")
        try:
            status, reason = parse_reply(head)
        except ValueError as e:
            raise OSError(f"proxy {redact(proxy)}: {e}") from None
        if not 200 <= status < 300:
            raise ProxyRefused(f"proxy {redact(proxy)} refused CONNECT to {host}:{port}: "
                               f"HTTP {status} {reason}".rstrip())
        return reader, writer
    except BaseException:
        writer.close()
        raise
