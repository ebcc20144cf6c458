"""Test support: in-memory fakes of the I/O edges and a network-namespace lab."""
