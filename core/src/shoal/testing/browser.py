"""Headless Chromium in a lab namespace, driven over plain WebDriver HTTP.

The test starts Debian's ``chromium`` itself (with a fresh profile and no
background traffic: no QUIC, no component updates, no sync) and a
``chromedriver`` attached to it, both inside a namespace with ``Lab.spawn``,
so both are stopped by PID when the test ends. WebDriver and other HTTP calls
run on one worker thread that entered that namespace (``setns``), so the test
process itself stays in its own network namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import json
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shoal.testing.netlab import Lab, wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CLONE_NEWNET = 0x40000000
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,900"]


def missing() -> str | None:
    """None if a browser test can run, else why not."""
    for exe in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(exe):
            return f"{exe} is not installed (Debian packages chromium, chromium-driver)"
    return None


class NetnsHttp:
    """HTTP requests made from inside a network namespace, on one dedicated thread."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.pool = ThreadPoolExecutor(1, initializer=self._enter)

    def _enter(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/var/run/netns/{self.ns}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns failed")
        finally:
            os.close(fd)

    def request(self, host: str, port: int, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 30
                ) -> tuple[int, dict[str, str], bytes]:
        def go() -> tuple[int, dict[str, str], bytes]:
            c = http.client.HTTPConnection(host, port, timeout=timeout)
            try:
                c.request(method, path, body=body, headers=headers or {})
                r = c.getresponse()
                return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
            finally:
                c.close()
        return self.pool.submit(go).result(timeout + 5)

    def can_connect(self, host: str, port: int) -> bool:
        def go() -> bool:
            try:
                socket.create_connection((host, port), timeout=1).close()
                return True
            except OSError:
                return False
        return self.pool.submit(go).result(10)

    def close(self) -> None:
        self.pool.shutdown(wait=False)


class Browser:
    """One Chromium and one WebDriver session in namespace ``ns``."""

    def __init__(self, lab: Lab, ns: str, devtools_port: int = 9222,
                 driver_port: int = 9515) -> None:
        self.lab = lab
        self.http = NetnsHttp(ns)
        self.driver_port = driver_port
        profile = lab.dir / f"chromium-{ns}"
        profile.mkdir()
        self.chromium = lab.spawn(ns, [CHROMIUM, *FLAGS, f"--user-data-dir={profile}",
                                       f"--remote-debugging-port={devtools_port}",
                                       "about:blank"], "chromium")
        self.driver = lab.spawn(ns, [CHROMEDRIVER, f"--port={driver_port}"], "chromedriver")
        try:
            wait_until(lambda: self.http.can_connect("127.0.0.1", devtools_port), 60,
                       what="chromium's DevTools port")
            wait_until(lambda: self.http.can_connect("127.0.0.1", driver_port), 60,
                       what="chromedriver")
            caps = {"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
                "debuggerAddress": f"127.0.0.1:{devtools_port}"}}}}
            self.session = self._call("POST", "/session", caps)["sessionId"]
        except BaseException:
            self.close()
            raise

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        status, _, raw = self.http.request("127.0.0.1", self.driver_port, method, path, data,
                                           {"Content-Type": "application/json"})
        out = json.loads(raw or b"{}")
        value = out.get("value", out)
        if status != 200:
            raise RuntimeError(f"WebDriver {method} {path}: {status} {value}")
        return value

    def _s(self, path: str) -> str:
        return f"/session/{self.session}{path}"

    def get(self, url: str) -> None:
        self._call("POST", self._s("/url"), {"url": url})

    def source(self) -> str:
        return str(self._call("GET", self._s("/source")))

    def title(self) -> str:
        return str(self._call("GET", self._s("/title")))

    def find(self, css: str) -> str:
        return str(self._call("POST", self._s("/element"),
                              {"using": "css selector", "value": css})[ELEMENT])

    def type(self, css: str, text: str) -> None:
        self._call("POST", self._s(f"/element/{self.find(css)}/value"), {"text": text})

    def click(self, css: str) -> None:
        self._call("POST", self._s(f"/element/{self.find(css)}/click"), {})

    def script(self, js: str, *args: Any) -> Any:
        return self._call("POST", self._s("/execute/sync"), {"script": js, "args": list(args)})

    def screenshot(self, path: str) -> None:
        import base64

        with open(path, "wb") as f:
            f.write(base64.b64decode(self._call("GET", self._s("/screenshot"))))

    def close(self) -> None:
        with contextlib.suppress(Exception):   # stopping anyway
            if getattr(self, "session", None):
                self._call("DELETE", self._s(""))
        for p in (self.driver, self.chromium):
            self.lab.stop(p, timeout=5)
        self.http.close()


def wait_for(cond: Any, timeout: float, what: str) -> float:
    """Wait for ``cond()``; returns the seconds it took."""
    t0 = time.monotonic()
    wait_until(cond, timeout, interval=0.1, what=what)
    return time.monotonic() - t0
