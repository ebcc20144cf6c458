"""Shoal plugin `wss`: the relay over WebSocket on TLS, optionally through an HTTP CONNECT proxy."""

__version__ = "0.1.0"
