"""Who may use the admin page: one secret token, checked on every request (sans-IO).

The token is 256 bits from ``secrets`` in ``STATE_DIR/admin.token`` (mode
0600), created by ``shoal server admin-token`` (or by the server when
``[admin]`` is on and there is none yet); ``--rotate`` replaces it, and every
browser session made with the old one ends at its next request, live updates
included (the file is re-read when it changes).

A request is let in by one of:

* ``Authorization: Bearer TOKEN`` (scripts): reads and actions;
* the session cookie a browser gets by posting the token to ``/login``
  (``HttpOnly``, ``SameSite=Strict``; its value is derived from the token):
  reads; an action also needs the CSRF value, derived from the token too and
  handed to the page, in the ``X-Shoal-CSRF`` header or the POST body. A
  cookie alone never changes anything, so another site cannot make a logged-in
  browser approve or evict.

Every comparison is constant-time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from shoal.errors import ShoalError

TOKEN_FILE = "admin.token"
COOKIE = "shoal_admin"
CSRF_HEADER = "x-shoal-csrf"
TOKEN_BYTES = 32
MIN_TOKEN_LEN = 32


class Access(Enum):
    NONE = "none"      # refused
    READ = "read"      # see the page and live updates
    WRITE = "write"    # and approve / evict / approve routes


def token_path(state_dir: str, token_file: str | None = None) -> Path:
    return Path(token_file) if token_file else Path(state_dir) / TOKEN_FILE


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def write_token(path: Path, token: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.replace(tmp, path)


def load_or_create_token(path: Path, create: bool = True, rotate: bool = False) -> str:
    """The admin token from ``path``; a new one when there is none (or ``rotate``)."""
    if not rotate:
        try:
            token = path.read_text().strip()
        except FileNotFoundError:
            token = ""
        except OSError as e:
            raise ShoalError(f"{path}: cannot read the admin token: {e.strerror}") from None
        if token:
            if len(token) < MIN_TOKEN_LEN:
                raise ShoalError(f"{path}: the admin token is too short; make a new one with "
                                 "'shoal server admin-token --rotate'")
            return token
        if not create:
            raise ShoalError(f"{path}: no admin token; create it with 'shoal server admin-token'")
    token = new_token()
    try:
        write_token(path, token)
    except OSError as e:
        raise ShoalError(f"{path}: cannot write the admin token: {e.strerror}") from None
    return token


def _derive(token: str, purpose: bytes) -> str:
    return hmac.new(token.encode(), b"shoal-admin " + purpose, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Credentials:
    """The token and the values derived from it."""

    token: str
    session: str   # cookie value
    csrf: str      # value the page sends with actions

    @classmethod
    def from_token(cls, token: str) -> Credentials:
        return cls(token, _derive(token, b"session"), _derive(token, b"csrf"))


def _eq(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def check(creds: Credentials | None, authorization: str, cookie: str | None,
          csrf: str | None) -> Access:
    """Access of one request, from its ``Authorization`` header, session cookie and CSRF value."""
    if creds is None:
        return Access.NONE
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value and _eq(value.strip(), creds.token):
        return Access.WRITE
    if cookie and _eq(cookie, creds.session):
        return Access.WRITE if csrf and _eq(csrf, creds.csrf) else Access.READ
    return Access.NONE


def check_login(creds: Credentials | None, offered: str) -> bool:
    return creds is not None and bool(offered) and _eq(offered.strip(), creds.token)


class TokenSource:
    """The current credentials, re-read when the token file changes (rotation)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._creds: Credentials | None = None

    def current(self) -> Credentials | None:
        try:
            st = self.path.stat()
        except OSError:
            self._stamp, self._creds = None, None
            return None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp != self._stamp:
            try:
                token = self.path.read_text().strip()
            except OSError:
                return None
            self._creds = Credentials.from_token(token) if len(token) >= MIN_TOKEN_LEN else None
            self._stamp = stamp
        return self._creds


class SignInLimit:
    """Failed sign-ins allowed: a burst, then one per ``interval`` seconds (token bucket).

    The token cannot be guessed anyway; this bounds the work and the log lines an
    unauthenticated client can cause.
    """

    def __init__(self, burst: int = 10, interval: float = 6.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.burst = burst
        self.interval = interval
        self.clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def _refill(self) -> None:
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) / self.interval)
        self._at = now

    def allowed(self) -> bool:
        self._refill()
        return self._tokens >= 1

    def failed(self) -> None:
        self._refill()
        self._tokens = max(0.0, self._tokens - 1)
