"""The node's local API: newline-delimited JSON over a Unix socket.

Request ``{"cmd": "status", "args": {...}}``; reply ``{"ok": true, "result": ...}``
or ``{"ok": false, "error": "one readable sentence"}``. The socket is created
mode 0600 (only the node's user may drive it); requests are bounded in size.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from shoal.errors import ShoalError

log = logging.getLogger(__name__)

MAX_REQUEST = 64 * 1024
Handler = Callable[[str, dict[str, Any]], Awaitable[Any]]


class ApiServer:
    def __init__(self, path: str, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        p = Path(self.path)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ShoalError(f"{p.parent}: cannot create the API socket's directory "
                             f"({e.strerror}); set [api] socket to a path in a writable "
                             "directory") from None
        if p.exists() or p.is_symlink():
            if _socket_alive(self.path):
                raise ShoalError(f"{self.path}: another node is already running on this API socket")
            p.unlink()
        # Bound with umask 0177 (mode 0600) without yielding to the event loop in
        # between: an await inside that window let another start (two nodes in one
        # process) read the narrowed umask as the one to restore, and keep it for good.
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(self.path)
        except OSError:
            sock.close()
            raise
        finally:
            os.umask(old)
        self._server = await asyncio.start_unix_server(self._serve, sock=sock,
                                                       limit=MAX_REQUEST)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            try:
                Path(self.path).unlink()
            except FileNotFoundError:
                pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    await _reply(writer, {"ok": False, "error": "request too large"})
                    return
                if not line:
                    return
                try:
                    req = json.loads(line)
                    cmd = req["cmd"]
                    args = req.get("args") or {}
                    if not isinstance(cmd, str) or not isinstance(args, dict):
                        raise TypeError
                except (ValueError, KeyError, TypeError):
                    await _reply(writer, {"ok": False, "error": "malformed request"})
                    continue
                try:
                    result = await self.handler(cmd, args)
                    out = {"ok": True, "result": result}
                except ShoalError as e:
                    out = {"ok": False, "error": str(e)}
                except Exception as e:  # noqa: BLE001 - the API must answer, not die
                    log.exception("api command %s failed", cmd)
                    out = {"ok": False, "error": f"internal error: {type(e).__name__}"}
                await _reply(writer, out)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def _reply(writer: asyncio.StreamWriter, obj: Any) -> None:
    writer.write(json.dumps(obj).encode() + b"\n")
    await writer.drain()


def _socket_alive(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(0.5)
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def call(path: str, cmd: str, args: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
    """Blocking client used by the CLI; raises ShoalError with the node's message."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        try:
            s.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            raise ShoalError(f"no node is running on {path} (start it with 'shoal up -c ...')") from None
        except PermissionError:
            raise ShoalError(f"{path}: permission denied (run as the node's user)") from None
        s.sendall(json.dumps({"cmd": cmd, "args": args or {}}).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                raise ShoalError("the node closed the API connection without answering")
            buf += chunk
    except socket.timeout:
        raise ShoalError(f"the node on {path} did not answer within {timeout:.0f} s") from None
    finally:
        s.close()
    reply = json.loads(buf)
    if not reply.get("ok"):
        raise ShoalError(reply.get("error", "request failed"))
    return reply.get("result")
