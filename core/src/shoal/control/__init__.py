"""Control plane between nodes and the coordination server."""
