"""A Shoal transport template: a plain UDP socket on its own port (see README.md)."""
