"""Sliding anti-replay window (RFC 6479 style, as in wireguard-go's ``replay``).

The bitmap is a ring of 64-bit blocks. Moving the window forward clears whole
blocks instead of shifting bits, so the cost of an in-order packet is constant.
One block is kept in reserve so that the window always covers at least
``WINDOW_SIZE`` counters behind the highest one seen.

Call ``check`` only after the packet authenticated: otherwise a forged packet
with a huge counter would slide the window and reject the real traffic.
"""

from __future__ import annotations

BLOCK_BITS = 64
RING_BLOCKS = 64                          # power of two
RING_MASK = RING_BLOCKS - 1
WINDOW_SIZE = (RING_BLOCKS - 1) * BLOCK_BITS  # 4032 packets of reordering tolerated
REJECT_AFTER_MESSAGES = (1 << 64) - (1 << 13) - 1


class ReplayWindow:
    __slots__ = ("_last", "_ring")

    def __init__(self) -> None:
        self._last = 0
        self._ring = [0] * RING_BLOCKS

    def reset(self) -> None:
        self._last = 0
        self._ring = [0] * RING_BLOCKS

    def check(self, counter: int) -> bool:
        """Accept ``counter`` once: True the first time, False if replayed or too old."""
        if counter >= REJECT_AFTER_MESSAGES:
            return False
        ring = self._ring
        block = counter >> 6
        last = self._last
        if counter > last:
            current = last >> 6
            diff = block - current
            if diff > RING_BLOCKS:
                diff = RING_BLOCKS
            for i in range(1, diff + 1):
                ring[(current + i) & RING_MASK] = 0
            self._last = counter
        elif last - counter > WINDOW_SIZE:
            return False
        idx = block & RING_MASK
        bit = 1 << (counter & 63)
        old = ring[idx]
        if old & bit:
            return False
        ring[idx] = old | bit
        return True
