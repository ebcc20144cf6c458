"""TURN credentials: long-term (RFC 8489 §9.2) and coturn's shared-secret "REST API" ones.

REST API (draft-uberti-behave-turn-rest, coturn ``use-auth-secret``): whoever
knows the server's static secret mints a time-limited credential::

    username = "<unix expiry time>:<name>"
    password = base64(HMAC-SHA1(secret, username))

The TURN server recomputes the password from the username, so no user table
is needed, and a leaked credential dies at its expiry. The long-term key used
for MESSAGE-INTEGRITY is MD5(username ":" realm ":" password) in both cases.

Secrets never leave this module in text form: ``repr`` hides them and the
plugin logs only the username.
"""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass, field

from shoal import stun


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)

    def key(self, realm: str) -> bytes:
        return stun.long_term_key(self.username, realm, self.password)

    def __str__(self) -> str:
        return f"user {self.username!r}"


def rest_api(secret: str, name: str, ttl: int, now: float) -> Credentials:
    """A coturn REST-API credential for ``name`` valid ``ttl`` seconds from ``now``."""
    username = f"{int(now) + ttl}:{name}"
    digest = hmac.new(secret.encode(), username.encode(), "sha1").digest()
    return Credentials(username, base64.b64encode(digest).decode())
