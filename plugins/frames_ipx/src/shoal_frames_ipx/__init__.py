"""Shoal plugin `ipx`: IPX over the virtual LAN and a DOSBox IPXNET bridge."""

__version__ = "0.1.0"
