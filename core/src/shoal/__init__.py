"""Shoal: a peer-to-peer VPN with one virtual LAN per network."""

__version__ = "0.1.0"
