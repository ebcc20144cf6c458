"""Admin page: token rules (sans-IO) and the page's HTTP behaviour over loopback."""

from __future__ import annotations

import asyncio
import json
import socket
import stat
import time

import pytest
from shoal.config import ServerConfig
from shoal.control import messages as m
from shoal.errors import ShoalError
from shoal.identity import StaticKeypair
from shoal.server import admin_auth as auth
from shoal.server.admin import AdminPage
from shoal.server.admin_view import render, snapshot
from shoal.server.app import Server


# --------------------------------------------------------------------------- tokens
def test_token_file_is_private_random_and_stable(tmp_path) -> None:
    p = tmp_path / "state" / "admin.token"
    t1 = auth.load_or_create_token(p)
    assert len(t1) >= 43                                  # 256 bits, urlsafe base64
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert auth.load_or_create_token(p) == t1             # printed again, not replaced
    t2 = auth.load_or_create_token(p, rotate=True)
    assert t2 != t1 and auth.load_or_create_token(p) == t2
    assert len({auth.new_token() for _ in range(100)}) == 100


def test_token_missing_or_weak_is_an_error(tmp_path) -> None:
    p = tmp_path / "admin.token"
    with pytest.raises(ShoalError, match="admin-token"):
        auth.load_or_create_token(p, create=False)
    p.write_text("short\n")
    with pytest.raises(ShoalError, match="too short"):
        auth.load_or_create_token(p)


def test_access_rules() -> None:
    c = auth.Credentials.from_token(auth.new_token())
    other = auth.Credentials.from_token(auth.new_token())
    A = auth.Access
    assert auth.check(c, f"Bearer {c.token}", None, None) is A.WRITE
    assert auth.check(c, f"bearer {c.token}", None, None) is A.WRITE
    assert auth.check(c, f"Bearer {other.token}", None, None) is A.NONE
    assert auth.check(c, "Bearer ", None, None) is A.NONE
    assert auth.check(c, f"Basic {c.token}", None, None) is A.NONE
    assert auth.check(c, "", c.session, None) is A.READ          # cookie: read only
    assert auth.check(c, "", c.session, c.csrf) is A.WRITE       # cookie + CSRF value: act
    assert auth.check(c, "", c.session, other.csrf) is A.READ
    assert auth.check(c, "", None, c.csrf) is A.NONE             # CSRF value alone: nothing
    assert auth.check(c, "", other.session, c.csrf) is A.NONE
    assert auth.check(c, "", c.token, None) is A.NONE            # the token is not the cookie
    assert auth.check(None, f"Bearer {c.token}", c.session, c.csrf) is A.NONE
    assert auth.check_login(c, c.token + "\n") and not auth.check_login(c, other.token)
    assert not auth.check_login(c, "")
    assert c.session != c.csrf and c.token not in (c.session, c.csrf)


def test_sign_in_limit() -> None:
    now = [0.0]
    lim = auth.SignInLimit(burst=3, interval=10.0, clock=lambda: now[0])
    for _ in range(3):
        assert lim.allowed()
        lim.failed()
    assert not lim.allowed()
    now[0] += 9.0
    assert not lim.allowed()
    now[0] += 1.5
    assert lim.allowed()
    lim.failed()
    assert not lim.allowed()
    now[0] += 1000
    assert lim.allowed()


def test_token_source_follows_rotation(tmp_path) -> None:
    p = tmp_path / "admin.token"
    t1 = auth.load_or_create_token(p)
    src = auth.TokenSource(p)
    assert src.current() == auth.Credentials.from_token(t1)
    time.sleep(0.01)
    t2 = auth.load_or_create_token(p, rotate=True)
    assert src.current() == auth.Credentials.from_token(t2)
    p.unlink()
    assert src.current() is None


# --------------------------------------------------------------------------- the page
def _server(tmp_path) -> tuple[Server, list[str]]:
    srv = Server(ServerConfig(state_dir=str(tmp_path), listen="127.0.0.1:7400"),
                 StaticKeypair.generate())
    keys = [StaticKeypair.generate().public_b64 for _ in range(3)]
    c = srv.coord
    for name, k in zip(("alice", "bob", "<carol>"), keys):
        c.login(k, m.Hello(name="carol" if name == "<carol>" else name), "198.51.100.7")
    c.create(keys[0], m.CreateArgs(name="lan", password="pw", join_mode="approval"), "h")
    c.join(keys[1], "lan", True)
    c.approve(keys[0], "lan", keys[1])
    c.join(keys[2], "lan", True)                       # pending
    c.report(keys[1], m.Report(nat=m.NatInfo(mapping="endpoint-independent",
                                             filtering="address-dependent")))
    return srv, keys


def test_view_shows_members_states_and_escapes(tmp_path) -> None:
    srv, keys = _server(tmp_path)
    srv.coord.logout(keys[0])
    snap = snapshot(srv)
    rows = {r["name"]: r for r in snap["networks"][0]["members"]}
    assert rows["alice"]["role"] == "owner" and not rows["alice"]["online"]
    assert rows["bob"]["online"] and rows["bob"]["nat"]["mapping"] == "endpoint-independent"
    assert rows["carol"]["status"] == "pending"
    html = render(snap, "CSRF")
    assert 'data-node="alice" data-state="offline"' in html
    assert 'data-node="bob" data-state="online"' in html
    assert "mapping endpoint-independent, filtering address-dependent" in html
    assert html.count('name="csrf" value="CSRF"') == 3  # approve carol, evict bob and carol
    srv.coord.nodes[keys[1]] = srv.coord.nodes[keys[1]].__class__(
        keys[1], "<b>x</b>", "100.64.0.9", 0, 0)
    assert "<b>x</b>" not in render(snapshot(srv), "CSRF")
    srv.store.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _http(port: int, method: str, path: str, headers: dict[str, str] | None = None,
                body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    h = {"Host": f"127.0.0.1:{port}", "Connection": "close", "Content-Length": str(len(body)),
         **(headers or {})}
    w.write(f"{method} {path} HTTP/1.1\r\n".encode()
            + "".join(f"{k}: {v}\r\n" for k, v in h.items()).encode() + b"\r\n" + body)
    data = await asyncio.wait_for(r.read(), 5)
    w.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), hdrs, rest


def test_page_refuses_without_token_and_acts_with_it(tmp_path) -> None:
    async def main() -> None:
        srv, keys = _server(tmp_path)
        path = tmp_path / "admin.token"
        token = auth.load_or_create_token(path)
        port = _free_port()
        page = AdminPage(srv, f"127.0.0.1:{port}", auth.TokenSource(path))
        await page.start()
        try:
            for method, p in (("GET", "/"), ("GET", "/api/state"), ("GET", "/events"),
                              ("GET", "/admin.js"), ("POST", "/action")):
                code, _, body = await _http(port, method, p)
                assert code == 401, (method, p)
                assert b"alice" not in body and b"100.64." not in body
            code, _, body = await _http(port, "GET", "/", {"Authorization": "Bearer nope"})
            assert code == 401 and b'name="token"' in body
            code, _, _ = await _http(port, "POST", "/login", body=b"token=wrong")
            assert code == 401
            assert page.sign_ins.allowed()
            code, hdrs, _ = await _http(port, "POST", "/login",
                                        {"Content-Type": "application/x-www-form-urlencoded"},
                                        f"token={token}".encode())
            assert code == 303
            cookie = hdrs["set-cookie"].split(";")[0]
            assert "HttpOnly" in hdrs["set-cookie"] and "SameSite=Strict" in hdrs["set-cookie"]
            assert token not in cookie
            code, hdrs, body = await _http(port, "GET", "/", {"Cookie": cookie})
            assert code == 200 and b"alice" in body and b"carol" in body
            assert "script-src 'self'" in hdrs["content-security-policy"]
            assert b"http://" not in body and b"https://" not in body   # nothing from outside
            csrf = auth.Credentials.from_token(token).csrf
            # the cookie alone cannot act (another site could make the browser send it)
            form = f"op=approve&network=lan&member={keys[2].replace('+', '%2B')}".encode()
            code, _, _ = await _http(port, "POST", "/action", {"Cookie": cookie}, form)
            assert code == 403
            assert srv.coord.members["lan"][keys[2]].status == "pending"
            code, _, body = await _http(port, "POST", "/action",
                                        {"Cookie": cookie, "X-Shoal-CSRF": csrf,
                                         "Accept": "application/json"}, form)
            assert code == 200 and json.loads(body)["ok"], body
            assert srv.coord.members["lan"][keys[2]].status == "active"
            # a script with the token: JSON in, JSON out
            code, _, body = await _http(
                port, "POST", "/action",
                {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                json.dumps({"op": "evict", "network": "lan", "member": "bob"}).encode())
            assert code == 200, body
            assert keys[1] not in srv.coord.members["lan"]
            code, _, body = await _http(
                port, "POST", "/action", {"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"},
                json.dumps({"op": "evict", "network": "nope", "member": "x"}).encode())
            assert code == 409 and json.loads(body)["code"] == "no_such_network"
            code, _, body = await _http(port, "GET", "/api/state",
                                        {"Authorization": f"Bearer {token}"})
            assert code == 200 and json.loads(body)["networks"][0]["name"] == "lan"
            # guessing is bounded: after a burst of failures, sign-ins wait
            codes = [(await _http(port, "POST", "/login", body=b"token=wrong"))[0]
                     for _ in range(12)]
            assert codes[0] == 401 and codes[-1] == 429
        finally:
            await page.close()
            srv.store.close()
    asyncio.run(main())


def test_live_stream_ends_when_the_token_is_rotated(tmp_path) -> None:
    async def main() -> None:
        srv, _ = _server(tmp_path)
        path = tmp_path / "admin.token"
        token = auth.load_or_create_token(path)
        port = _free_port()
        page = AdminPage(srv, f"127.0.0.1:{port}", auth.TokenSource(path))
        await page.start()
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(f"GET /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
                    .encode())
            buf = b""
            while b"event: state" not in buf:
                buf += await asyncio.wait_for(r.read(65536), 5)
            assert b"text/event-stream" in buf and b"alice" in buf
            auth.load_or_create_token(path, rotate=True)
            rest = await asyncio.wait_for(r.read(), 5)   # the server ends the stream
            assert b"event: end" in rest
            w.close()
        finally:
            await page.close()
            srv.store.close()
    asyncio.run(main())


def test_route_approval_from_the_page(tmp_path) -> None:
    async def main() -> None:
        srv, keys = _server(tmp_path)
        c = srv.coord
        c.set(keys[0], m.SetArgs(name="lan", type="gateway"), None)
        c.route_add(keys[1], m.RouteArgs(name="lan", prefix="192.168.50.0/24"))
        html = render(snapshot(srv), "CSRF")
        assert 'data-route="192.168.50.0/24" data-state="pending"' in html
        assert 'name="prefix" value="192.168.50.0/24"' in html
        path = tmp_path / "admin.token"
        token = auth.load_or_create_token(path)
        port = _free_port()
        page = AdminPage(srv, f"127.0.0.1:{port}", auth.TokenSource(path))
        await page.start()
        try:
            body = b"op=route_approve&network=lan&prefix=192.168.50.0%2F24"
            code, _, _ = await _http(port, "POST", "/action", {}, body)
            assert code == 401
            code, hdrs, _ = await _http(port, "POST", "/action",
                                        {"Authorization": f"Bearer {token}"}, body)
            assert code == 303 and hdrs["location"] == "/?done=route_approved"
            assert [r.approved for r in c.route_list(keys[0], "lan")] == [True]
            snap = snapshot(srv)
            assert {r["name"]: r["routes"] for r in snap["networks"][0]["members"]}["bob"] \
                == ["192.168.50.0/24"]
            code, _, body = await _http(port, "GET", "/?done=route_approved",
                                        {"Authorization": f"Bearer {token}"})
            assert b"Route approved." in body and b'data-state="approved"' in body
        finally:
            await page.close()
            srv.store.close()
    asyncio.run(main())


def test_admin_token_command(tmp_path, capsys) -> None:
    from shoal.cli import main

    cfg = tmp_path / "server.toml"
    cfg.write_text(f'state_dir = "{tmp_path / "s"}"\nlisten = "127.0.0.1:7400"\n'
                   '[admin]\nlisten = "127.0.0.1:7480"\n')
    assert main(["server", "admin-token", "-c", str(cfg)]) == 0
    t1 = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["server", "admin-token", "-c", str(cfg)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == t1
    assert main(["server", "admin-token", "-c", str(cfg), "--rotate"]) == 0
    out = capsys.readouterr()
    assert out.out.strip() != t1 and "signed out" in out.err
    assert (tmp_path / "s" / "admin.token").read_text().strip() == out.out.strip()
    cfg.write_text(f'state_dir = "{tmp_path / "s"}"\n[admin]\nport = 7480\n')
    assert main(["server", "admin-token", "-c", str(cfg)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "admin.port: unknown key" in err[0]
