"""Shoal plugin `broadcast`: broadcast and multicast across every network a node shares."""

__version__ = "0.1.0"
