"""The coordination server: login, stable addresses, networks, presence."""
