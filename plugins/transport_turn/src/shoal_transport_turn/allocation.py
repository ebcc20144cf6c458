"""One TURN allocation as a state machine, sans-IO (RFC 8656).

Rules it obeys:

* Requests are built here and answered by the caller feeding the response
  back; nothing here touches a socket or reads a clock (``now`` is passed in).
* Authentication (RFC 8489 §9.2, long-term credentials): the first Allocate
  goes out unsigned; a 401 carrying REALM and NONCE is the challenge, and the
  request is sent again signed (USERNAME, REALM, NONCE, MESSAGE-INTEGRITY).
  438 Stale Nonce updates the nonce and retries. A 401 to a signed request
  means the credential is wrong: that is final (``Failure``), never retried
  in a loop. Every later request (Refresh, CreatePermission, ChannelBind) is
  signed with the learnt realm and nonce. Success responses to signed
  requests must carry a valid MESSAGE-INTEGRITY, or they are ignored.
* Lifetimes (§3.6-3.8): the allocation is refreshed at half its lifetime,
  permissions (5 min) every ``PERMISSION_REFRESH`` s, channels (10 min) every
  ``CHANNEL_REFRESH`` s.

States::

    IDLE --allocate--> ALLOCATING --success--> READY --refresh fails--> FAILED
                            |                     \\--close--> CLOSED
                            \\--error--> FAILED
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum

from shoal import stun

from shoal_transport_turn.credentials import Credentials

log = logging.getLogger(__name__)

Addr = tuple[str, int]
LIFETIME = 600
PERMISSION_REFRESH = 240.0
CHANNEL_REFRESH = 300.0
SOFTWARE = "shoal-transport-turn"

ERROR_HINTS = {
    401: "wrong username or password (or shared secret)",
    403: "the server forbids this (peer address or quota)",
    437: "an allocation already exists for this address; retrying from a new port",
    438: "stale nonce",
    441: "wrong credentials for this allocation",
    442: "the server does not relay UDP",
    486: "allocation quota reached for this user",
    508: "the server has no capacity left",
}


class State(Enum):
    IDLE = "idle"
    ALLOCATING = "allocating"
    READY = "ready"
    FAILED = "failed"
    CLOSED = "closed"


@dataclass(frozen=True)
class Failure:
    """A final TURN error, one readable line (credentials never appear in it)."""

    code: int | None
    reason: str

    def __str__(self) -> str:
        if self.code is None:
            return self.reason
        hint = ERROR_HINTS.get(self.code)
        return f"{self.code} {self.reason}" + (f": {hint}" if hint else "")


class Retry:
    """The request must be built and sent again (challenge answered, nonce refreshed)."""


RETRY = Retry()


class Allocation:
    def __init__(self, creds: Credentials, lifetime: int = LIFETIME) -> None:
        self.creds = creds
        self.wanted_lifetime = lifetime
        self.state = State.IDLE
        self.realm: str | None = None
        self.nonce: bytes | None = None
        self.relayed: Addr | None = None
        self.mapped: Addr | None = None
        self.lifetime = 0
        self.refresh_at = 0.0
        self.failure: Failure | None = None
        self._signed_challenges = 0

    def _to(self, new: State, why: str) -> None:
        if new is not self.state:
            log.debug("turn allocation: %s -> %s (%s)", self.state.value, new.value, why)
            self.state = new

    # ------------------------------------------------------------ signing
    @property
    def key(self) -> bytes | None:
        return self.creds.key(self.realm) if self.realm is not None else None

    def sign(self, msg: stun.Message) -> bytes | None:
        """Add USERNAME/REALM/NONCE when the realm is known; the MESSAGE-INTEGRITY key."""
        if self.realm is None or self.nonce is None:
            return None
        msg.attributes["USERNAME"] = self.creds.username
        msg.attributes["REALM"] = self.realm
        msg.attributes["NONCE"] = self.nonce
        return self.key

    def verify(self, resp: stun.Message, signed: bool) -> bool:
        """Success responses to signed requests must carry a valid MESSAGE-INTEGRITY."""
        key = self.key
        return not signed or (key is not None and stun.check_integrity(resp, key))

    def on_error(self, resp: stun.Message, signed: bool) -> Retry | Failure:
        """An error response: answer the challenge once, follow nonce changes, else fail."""
        code, reason = stun.error_of(resp) or (None, "error response without ERROR-CODE")
        realm, nonce = resp.attributes.get("REALM"), resp.attributes.get("NONCE")
        if code == 438 and nonce is not None:
            self.nonce = nonce
            return RETRY
        if code == 401 and realm is not None and nonce is not None and (
                not signed or (self._signed_challenges == 0 and nonce != self.nonce)):
            self._signed_challenges += signed
            self.realm, self.nonce = str(realm), nonce
            return RETRY
        return Failure(code, str(reason))

    # ------------------------------------------------------------ requests
    def allocate_request(self) -> stun.Message:
        self._to(State.ALLOCATING, "allocate")
        return stun.Message(stun.Method.ALLOCATE, stun.Class.REQUEST, attributes={
            "REQUESTED-TRANSPORT": stun.UDP_TRANSPORT, "LIFETIME": self.wanted_lifetime,
            "SOFTWARE": SOFTWARE})

    def on_allocated(self, resp: stun.Message, now: float) -> Addr:
        relayed = resp.attributes.get("XOR-RELAYED-ADDRESS")
        if relayed is None:
            raise stun.StunError("Allocate success without XOR-RELAYED-ADDRESS")
        self.relayed = (str(relayed[0]), int(relayed[1]))
        mapped = resp.attributes.get("XOR-MAPPED-ADDRESS")
        self.mapped = (str(mapped[0]), int(mapped[1])) if mapped else None
        self._lifetime(resp, now)
        self._signed_challenges = 0
        self._to(State.READY, f"relayed {self.relayed[0]}:{self.relayed[1]}")
        return self.relayed

    def _lifetime(self, resp: stun.Message, now: float) -> None:
        self.lifetime = int(resp.attributes.get("LIFETIME", self.wanted_lifetime))
        self.refresh_at = now + max(10.0, self.lifetime / 2)

    def refresh_request(self, lifetime: int | None = None) -> stun.Message:
        return stun.Message(stun.Method.REFRESH, stun.Class.REQUEST, attributes={
            "LIFETIME": self.wanted_lifetime if lifetime is None else lifetime})

    def on_refreshed(self, resp: stun.Message, now: float) -> None:
        self._lifetime(resp, now)
        self._signed_challenges = 0

    def permission_request(self, ips: list[str]) -> stun.Message:
        """CreatePermission for up to a few IPs (one XOR-PEER-ADDRESS each; the codec
        carries one attribute per name, so the caller sends one request per IP)."""
        if len(ips) != 1:
            raise ValueError("one IP per CreatePermission request")
        return stun.Message(stun.Method.CREATE_PERMISSION, stun.Class.REQUEST,
                            attributes={"XOR-PEER-ADDRESS": (ips[0], 0)})

    def channel_bind_request(self, channel: int, peer: Addr) -> stun.Message:
        return stun.Message(stun.Method.CHANNEL_BIND, stun.Class.REQUEST, attributes={
            "CHANNEL-NUMBER": channel, "XOR-PEER-ADDRESS": peer})

    def fail(self, failure: Failure) -> None:
        self.failure = failure
        self._to(State.FAILED, str(failure))

    def close(self) -> None:
        self._to(State.CLOSED, "closed")


def send_indication(peer: Addr, payload: bytes) -> stun.Message:
    """Data to a peer without a channel (RFC 8656 §10): needs a permission for its IP."""
    return stun.Message(stun.Method.SEND, stun.Class.INDICATION, attributes={
        "XOR-PEER-ADDRESS": peer, "DATA": payload})


def data_indication(msg: stun.Message) -> tuple[Addr, bytes] | None:
    """A Data indication from the server: (peer, payload), or None if it is not one."""
    if msg.message_method != stun.Method.DATA or msg.message_class != stun.Class.INDICATION:
        return None
    peer, data = msg.attributes.get("XOR-PEER-ADDRESS"), msg.attributes.get("DATA")
    if peer is None or data is None:
        return None
    return (str(peer[0]), int(peer[1])), bytes(data)
