"""Each peer's current path in one word, for ``status``, metrics and the server's admin page."""

from __future__ import annotations

from typing import Any

from shoal.control import messages as m


def peer_path(peer: Any, now: float) -> tuple[str, str | None]:
    """The peer's path kind (``direct``/``relay``/``none``) and the transport carrying it,
    as ``shoal status`` reports them."""
    if not peer.online(now) or peer.path is None:
        return "none", None
    return peer.path.kind.value, peer.path.transport.name


def path_reports(engine: Any) -> list[m.PathReport]:
    """What a node tells the server about its paths (sent with heartbeats when changed)."""
    if engine is None:
        return []
    now = engine.clock()
    out = []
    for p in list(engine.peers.values())[:m.MAX_PATH_REPORTS]:
        kind, transport = peer_path(p, now)
        rtt = None if p.rtt_ms is None else round(p.rtt_ms, 1)
        out.append(m.PathReport(public_key=p.public_key_b64, path=kind,  # type: ignore[arg-type]
                                transport=(transport or None) and transport[:32], rtt_ms=rtt))
    return out
