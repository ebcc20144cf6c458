"""A peer's path: which transport carries its packets, to which endpoint, of which kind.

One ``Path`` value per peer (``Peer.path``), replaced only by ``Peer.set_path``,
which logs the old path, the new one and the reason. Engine (roaming), node
(relay readiness, path choice) and traversal plugins (through
``NodeHandle.offer_path`` / ``path_lost``) all go through it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from shoal.transport import Endpoint, PathKind, Transport, endpoint_text


@dataclass(frozen=True)
class Path:
    """Immutable: (transport, endpoint); ``kind`` is the transport's kind when made.

    Two paths are equal when they use the same transport object and the same
    endpoint (transports compare by identity).
    """

    transport: Transport
    endpoint: Endpoint
    kind: PathKind = field(default=PathKind.DIRECT, compare=False)

    @classmethod
    def over(cls, transport: Transport, endpoint: Endpoint) -> Path:
        return cls(transport, endpoint, transport.kind)

    def __str__(self) -> str:
        return f"{self.transport.name} {endpoint_text(self.endpoint)} ({self.kind.value})"


class PathState(Enum):
    """What the node knows of one candidate path to a peer.

    Transitions: UNTRIED -> USABLE (a probe or authenticated packet came back over
    it) <-> LOST (probes stopped coming back, or its transport was lost).
    """

    UNTRIED = "untried"
    USABLE = "usable"
    LOST = "lost"


def path_text(path: Path | None) -> str:
    return "none" if path is None else str(path)
