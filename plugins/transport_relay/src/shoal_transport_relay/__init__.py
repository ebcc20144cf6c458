"""Shoal plugin `relay`: TURN-like relay (UDP and TCP) for peers that cannot reach each other directly."""

__version__ = "0.1.0"
