"""Network passwords: stored only as a slow, salted KDF hash (scrypt, RFC 7914).

Format: ``scrypt$N$r$p$salt_b64$hash_b64``; parameters travel with the hash so
they can be raised later without breaking old networks.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

N, R, P = 1 << 14, 8, 1
DKLEN = 32
MAX_PASSWORD = 1024


def hash_password(password: str, *, n: int = N) -> str:
    salt = os.urandom(16)
    dk = hashlib.scrypt(password.encode(), salt=salt, n=n, r=R, p=P, dklen=DKLEN, maxmem=64 << 20)
    return "$".join(["scrypt", str(n), str(R), str(P), base64.b64encode(salt).decode(),
                     base64.b64encode(dk).decode()])


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt_b64, dk_b64 = stored.split("$")
        if kind != "scrypt":
            return False
        salt, want = base64.b64decode(salt_b64), base64.b64decode(dk_b64)
        got = hashlib.scrypt(password.encode(), salt=salt, n=int(n), r=int(r), p=int(p),
                             dklen=len(want), maxmem=64 << 20)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)
