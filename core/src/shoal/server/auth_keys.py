"""Pre-auth keys: how a node gets in when the server's registration is "key".

An operator creates a key with ``shoal server key create`` and hands its text
to the node (``[server] auth_key`` or ``auth_key_file``); the node presents it
in its hello, inside the encrypted control channel. The text is
``shoal-key-<id>-<secret>``: ``id`` (8 hex digits) finds the row, ``secret``
(32 random bytes, base64url) proves possession. Only SHA-256 of the secret is
stored: the secret is random and long, so a slow KDF would add nothing but
cost, and a copy of the database does not let anyone register.

A key is single-use unless ``reusable``; it may expire, and it may name a
network the node then joins without its password. ``revoked`` keys stay
listed. A key is consumed by the first login of a key the server does not
know yet; nodes already registered never need one again.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from shoal.errors import ShoalError

PREFIX = "shoal-key-"
_TEXT = re.compile(r"^shoal-key-([0-9a-f]{8})-([A-Za-z0-9_-]{40,64})$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class AuthKeyRecord:
    id: str
    secret_hash: str          # hex SHA-256 of the secret
    reusable: bool
    expires: float | None     # unix seconds
    network: str | None
    created: float
    uses: int = 0
    revoked: bool = False

    def state(self, now: float) -> str:
        if self.revoked:
            return "revoked"
        if self.expires is not None and self.expires <= now:
            return "expired"
        if self.uses and not self.reusable:
            return "used"
        return "valid"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def generate(now: float, reusable: bool = False, expires: float | None = None,
             network: str | None = None) -> tuple[str, AuthKeyRecord]:
    """A new key: (the text to hand out, the record to store)."""
    kid = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    return (f"{PREFIX}{kid}-{secret}",
            AuthKeyRecord(kid, _hash(secret), reusable, expires, network, now))


def parse(text: str) -> tuple[str, str] | None:
    """(id, secret) from a key's text, or None if it is not one."""
    m = _TEXT.match(text.strip())
    return (m.group(1), m.group(2)) if m else None


def check(record: AuthKeyRecord | None, secret: str, now: float) -> str | None:
    """None if the key admits a new node now, else why not (one sentence)."""
    if record is None or not hmac.compare_digest(record.secret_hash, _hash(secret)):
        return "the pre-auth key is not known to this server"
    state = record.state(now)
    if state != "valid":
        return f"the pre-auth key is {state}; ask the operator for a new one"
    return None


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``12h``, ``30d``, ``2w`` to seconds."""
    m = _DURATION.match(text.strip().lower())
    if not m or float(m.group(1)) <= 0:
        raise ShoalError(f"{text!r} is not a duration; use e.g. 90s, 15m, 12h, 30d or 2w")
    return float(m.group(1)) * _UNITS[m.group(2)]
