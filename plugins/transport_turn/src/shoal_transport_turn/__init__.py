"""Shoal transport plugin ``turn``: relayed addresses on standard TURN servers (RFC 8656)."""

__version__ = "0.1.0"
