"""Which of a peer's paths carries its traffic: a pure function (Tailscale's ``betterAddr``).

Rules it obeys, in order:

1. Only ``USABLE`` paths are chosen; with none, the current path stays (it may
   still be the best guess, e.g. a handshake in progress).
2. A direct path beats a relayed one (``PathKind``).
3. Then config preference: the transport's position in ``plugins = [...]``
   (lower wins).
4. Then measured quality: ``cost = rtt * (1 + LOSS_WEIGHT * loss)``.
5. Hysteresis: the current path is left for another of the same kind and
   preference only when that one's cost is lower by both ``SWITCH_RATIO`` and
   ``SWITCH_MIN`` seconds, so two paths of about the same quality do not flap.
   Kind and preference changes are not subject to hysteresis: they are not
   noisy measurements.

Nothing here reads a clock or touches a socket; the inputs are the path
table's current figures (see ``path_table.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shoal.path import Path, PathState
from shoal.transport import PathKind

#: A lossy path costs as if its RTT were this much larger per unit of loss.
LOSS_WEIGHT = 4.0
#: Switch to a better-measured path only if it is this much cheaper (relative)...
SWITCH_RATIO = 0.8
#: ...and by at least this many seconds.
SWITCH_MIN = 0.005
#: RTT assumed for a usable path not measured yet (seconds).
UNMEASURED_RTT = 1.0


@dataclass(frozen=True)
class PathFigures:
    """What path choice knows of one path."""

    path: Path
    state: PathState
    preference: int            # the transport's position in ``plugins`` order
    rtt: float | None = None   # smoothed round-trip time, seconds
    loss: float = 0.0          # fraction of recent probes unanswered, 0..1

    @property
    def cost(self) -> float:
        rtt = UNMEASURED_RTT if self.rtt is None else self.rtt
        return rtt * (1.0 + LOSS_WEIGHT * self.loss)

    def rank(self) -> tuple[int, int, float]:
        return (0 if self.path.kind is PathKind.DIRECT else 1, self.preference, self.cost)


def better(new: PathFigures, current: PathFigures | None) -> bool:
    """Should the peer move from ``current`` to ``new``? (rules 1-5 above)"""
    if new.state is not PathState.USABLE:
        return False
    if current is None or current.state is not PathState.USABLE:
        return True
    if new.path == current.path:
        return False
    a, b = new.rank()[:2], current.rank()[:2]
    if a != b:
        return a < b
    return new.cost < current.cost * SWITCH_RATIO and current.cost - new.cost >= SWITCH_MIN


def choose(current: Path | None, table: Iterable[PathFigures]) -> Path | None:
    """The path to use now: the best usable one, unless ``current`` is good enough."""
    figures = list(table)
    cur = next((f for f in figures if f.path == current), None)
    usable = [f for f in figures if f.state is PathState.USABLE]
    if not usable:
        return current
    best = min(usable, key=PathFigures.rank)
    return best.path if better(best, cur) else current


def reason(new: PathFigures, current: PathFigures | None) -> str:
    """Why ``better(new, current)`` holds, in a few words (for the path-change log)."""
    if current is None:
        return "first usable path"
    if current.state is not PathState.USABLE:
        return f"current path {current.state.value}"
    if new.path.kind is not current.path.kind:
        return "direct beats relayed"
    if new.preference != current.preference:
        return "preferred transport (plugins order)"
    return f"better measured ({new.cost * 1000:.1f} ms < {current.cost * 1000:.1f} ms)"
