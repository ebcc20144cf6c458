"""Shoal plugin `ice`: ICE-style NAT traversal: candidates, connectivity checks, nomination, NAT discovery."""

__version__ = "0.1.0"
