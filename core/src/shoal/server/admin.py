"""The admin page of the coordination server (``[admin] listen``, off by default).

One small page: every network with its members, their virtual addresses,
online state, NAT type and current paths, and its gateway routes, updated
live by Server-Sent Events, with approve / evict / approve-route buttons.
Served by ``shoal.http_server`` (h11) on the server's own event loop, so it
reads the coordinator's state directly and runs actions through the
coordinator's own operations, like a request from the network's owner.

Access (see ``admin_auth``): the token from ``shoal server admin-token``,
checked on every request including each update of the live stream; without it
every path answers 401 with only a sign-in form. Actions need the token or the
CSRF value in a header or the POST body, never the cookie alone. The page,
its script and its style come from this server only (a strict
Content-Security-Policy; nothing is loaded from elsewhere).

Routes::

    GET  /            the page (or the sign-in form, 401)
    POST /login       token=...: sets the session cookie, 303 to /
    POST /logout      ends the browser session (CSRF)
    GET  /events      text/event-stream: "state" events with the page's main section
    GET  /api/state   the same data as JSON
    POST /action      op=approve|evict, network, member (public key, name or address);
                      op=route_approve, network, prefix: form or JSON
    GET  /admin.js, /admin.css
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator
from html import escape
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl

from shoal import __version__
from shoal.http_server import HttpServer, Request, Response
from shoal.server import admin_auth as auth
from shoal.server.admin_view import NOTICES, render, snapshot
from shoal.server.coordinator import RequestError

log = logging.getLogger(__name__)

UPDATE_INTERVAL = 1.0        # seconds between checks for changes on a live stream
KEEPALIVE_INTERVAL = 15.0    # an SSE comment at least this often
ACTIONS = ("approve", "evict", "route_approve")

_STATIC = resources.files("shoal.server") / "admin_static"
JS = (_STATIC / "admin.js").read_bytes()
CSS = (_STATIC / "admin.css").read_bytes()

LOGIN_STYLE = ("body{font:15px/1.45 system-ui,sans-serif;max-width:28rem;margin:3rem auto;"
               "padding:1rem}input{font:inherit;width:100%;box-sizing:border-box;padding:.3rem}"
               "button{font:inherit;margin-top:.6rem}.error{color:#b42318}")
_LOGIN_STYLE_HASH = base64.b64encode(hashlib.sha256(LOGIN_STYLE.encode()).digest()).decode()

COMMON_HEADERS = [
    ("cache-control", "no-store"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
]
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
            "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
LOGIN_CSP = (f"default-src 'none'; style-src 'sha256-{_LOGIN_STYLE_HASH}'; form-action 'self'; "
             "frame-ancestors 'none'; base-uri 'none'")


def _html(status: int, body: str, csp: str, extra: list[tuple[str, str]] | None = None
          ) -> Response:
    return Response(status, body.encode(), "text/html; charset=utf-8",
                    [*COMMON_HEADERS, ("content-security-policy", csp), *(extra or [])])


def _json(status: int, obj: Any) -> Response:
    return Response(status, json.dumps(obj).encode(), "application/json", list(COMMON_HEADERS))


def login_page(error: str | None = None) -> Response:
    err = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    return _html(401, f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Shoal admin: sign in</title><style>{LOGIN_STYLE}</style></head>
<body><main><h1>Shoal admin</h1>{err}
<form method="post" action="/login">
<label for="token">Admin token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button></form>
<p>Print the token on the server with <code>shoal server admin-token -c server.toml</code>.</p>
</main></body></html>""", LOGIN_CSP)


class AdminPage:
    def __init__(self, server: Any, listen: str, tokens: auth.TokenSource) -> None:
        self.server = server
        self.tokens = tokens
        self.http = HttpServer(listen, self._handle, "admin page")
        self._cache: tuple[float, str, str] | None = None   # (time, csrf, html)
        self.sign_ins = auth.SignInLimit()

    async def start(self) -> None:
        await self.http.start()

    async def close(self) -> None:
        await self.http.close()

    # ------------------------------------------------------------ access
    def _access(self, req: Request, csrf: str | None = None) -> tuple[auth.Access,
                                                                       auth.Credentials | None]:
        creds = self.tokens.current()
        cookie = req.cookies().get(auth.COOKIE)
        return auth.check(creds, req.header("authorization"), cookie,
                          csrf or req.header(auth.CSRF_HEADER) or None), creds

    def _main(self, creds: auth.Credentials) -> str:
        """The main section, rendered at most once per update interval for all viewers."""
        now = time.monotonic()
        c = self._cache
        if c is not None and c[1] == creds.csrf and now - c[0] < UPDATE_INTERVAL / 2:
            return c[2]
        html = render(snapshot(self.server), creds.csrf)
        self._cache = (now, creds.csrf, html)
        return html

    # ------------------------------------------------------------ routes
    async def _handle(self, req: Request) -> Response:
        if req.method == "POST" and req.path == "/login":
            return self._login(req)
        access, creds = self._access(req)
        if access is auth.Access.NONE or creds is None:
            if req.path.startswith("/api/") or req.path in ("/events", "/action"):
                return _json(401, {"ok": False, "error": "the admin token is missing or wrong"})
            return login_page()
        match req.method, req.path:
            case "GET", "/":
                return self._page(req, creds)
            case "GET", "/admin.js":
                return Response(200, JS, "text/javascript; charset=utf-8", list(COMMON_HEADERS))
            case "GET", "/admin.css":
                return Response(200, CSS, "text/css; charset=utf-8", list(COMMON_HEADERS))
            case "GET", "/api/state":
                return _json(200, snapshot(self.server))
            case "GET", "/events":
                return Response(200, content_type="text/event-stream",
                                headers=list(COMMON_HEADERS), stream=self._events(req))
            case "POST", "/action":
                return await self._action(req)
            case "POST", "/logout":
                return self._logout(req)
        return _json(404, {"ok": False, "error": "not found"})

    def _page(self, req: Request, creds: auth.Credentials) -> Response:
        code = req.query.get("done", "")
        notice = escape(NOTICES.get(code, ""))
        return _html(200, f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="shoal-csrf" content="{escape(creds.csrf)}">
<title>Shoal admin</title>
<link rel="stylesheet" href="/admin.css"><script src="/admin.js" defer></script></head>
<body><header><h1>Shoal admin</h1>
<p id="live" role="status">Updates every second</p>
<form method="post" action="/logout"><input type="hidden" name="csrf" value="{escape(creds.csrf)}">
<button type="submit">Sign out</button></form></header>
<p id="notice" role="status" aria-live="polite">{notice}</p>
<main id="state">{self._main(creds)}</main>
<footer><p class="meta">Shoal {escape(__version__)}</p></footer>
</body></html>""", PAGE_CSP)

    def _login(self, req: Request) -> Response:
        if not self.sign_ins.allowed():
            resp = login_page("Too many failed sign-ins; wait a minute and try again.")
            resp.status = 429
            resp.headers.append(("retry-after", "60"))
            return resp
        offered = dict(parse_qsl(req.body.decode("utf-8", "replace"))).get("token", "")
        creds = self.tokens.current()
        if creds is None or not auth.check_login(creds, offered):
            self.sign_ins.failed()
            log.warning("admin page: refused a sign-in from %s", req.peer)
            return login_page("That token is not right.")
        cookie = f"{auth.COOKIE}={creds.session}; HttpOnly; SameSite=Strict; Path=/"
        return Response(303, b"", headers=[*COMMON_HEADERS, ("location", "/"),
                                           ("set-cookie", cookie)])

    def _logout(self, req: Request) -> Response:
        form = dict(parse_qsl(req.body.decode("utf-8", "replace")))
        access, _ = self._access(req, form.get("csrf"))
        if access is not auth.Access.WRITE:
            return _json(403, {"ok": False, "error": "sign-out needs the page's CSRF value"})
        cookie = f"{auth.COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
        return Response(303, b"", headers=[*COMMON_HEADERS, ("location", "/"),
                                           ("set-cookie", cookie)])

    async def _events(self, req: Request) -> AsyncIterator[bytes]:
        """The live stream: the main section whenever it changes; ends when access does."""
        sent = None
        last_write = time.monotonic()
        yield b"retry: 2000\n\n"
        while True:
            access, creds = self._access(req)
            if access is auth.Access.NONE or creds is None:
                yield b"event: end\ndata: signed out\n\n"
                return
            html = self._main(creds)
            now = time.monotonic()
            if html != sent:
                sent, last_write = html, now
                data = "".join(f"data: {line}\n" for line in html.split("\n"))
                yield f"event: state\n{data}\n".encode()
            elif now - last_write >= KEEPALIVE_INTERVAL:
                last_write = now
                yield b": keepalive\n\n"
            await asyncio.sleep(UPDATE_INTERVAL)

    async def _action(self, req: Request) -> Response:
        ctype = req.header("content-type").split(";")[0].strip().lower()
        try:
            if ctype == "application/json":
                form = json.loads(req.body or b"{}")
                if not isinstance(form, dict):
                    raise ValueError("not an object")
                form = {str(k): str(v) for k, v in form.items()}
            else:
                form = dict(parse_qsl(req.body.decode("utf-8", "replace")))
        except ValueError:
            return _json(400, {"ok": False, "error": "the request body is not valid"})
        access, _ = self._access(req, form.get("csrf"))
        wants_json = "application/json" in req.header("accept") or ctype == "application/json"
        if access is not auth.Access.WRITE:
            return _json(403, {"ok": False, "error": "actions need the admin token or the "
                                                     "page's CSRF value, not only the cookie"})
        op, network = form.get("op", ""), form.get("network", "")
        target = form.get("prefix", "") if op == "route_approve" else form.get("member", "")
        try:
            code, message = await self.run_action(op, network, target)
        except RequestError as e:
            if wants_json:
                return _json(409, {"ok": False, "code": e.code, "error": str(e)})
            code = e.code if e.code in NOTICES else "invalid"
            return Response(303, b"", headers=[*COMMON_HEADERS, ("location", f"/?done={code}")])
        log.info("admin page: %s", message)
        if wants_json:
            return _json(200, {"ok": True, "message": message})
        return Response(303, b"", headers=[*COMMON_HEADERS, ("location", f"/?done={code}")])

    async def run_action(self, op: str, network: str, target: str) -> tuple[str, str]:
        """Run one action as the network's owner's request would (``Server.operate``);
        returns (notice code, message). ``target`` is a member (public key, name or
        address), or for ``route_approve`` the route's prefix."""
        srv = self.server
        coord = srv.coord
        if op not in ACTIONS:
            raise RequestError("invalid", f"unknown action {op!r}")
        owner = coord.network(network).owner
        if op == "route_approve":
            info = await srv.operate(owner, op, {"name": network, "prefix": target})
            via = info.get("gateway_name") or info.get("gateway")
            return "route_approved", f"route {info.get('prefix')} via {via} approved in {network}"
        who = coord.resolve_member(network, target)
        name = coord.nodes[who].name if who in coord.nodes else who
        await srv.operate(owner, op, {"name": network, "member": who})
        if op == "approve":
            return "approved", f"{name} approved in {network}"
        return "evicted", f"{name} evicted from {network}"


async def start_admin(server: Any) -> AdminPage | None:
    """Start the ``[admin]`` page, if configured (creating the token if there is none)."""
    cfg = server.cfg.admin
    if cfg.listen is None:
        return None
    path = auth.token_path(server.cfg.state_dir, cfg.token_file)
    auth.load_or_create_token(path, create=True)
    page = AdminPage(server, cfg.listen, auth.TokenSource(path))
    await page.start()
    log.info("admin page on http://%s/ (token: shoal server admin-token)", cfg.listen)
    return page
