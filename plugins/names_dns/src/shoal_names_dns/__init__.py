"""Names for overlay addresses: ``<node>.<network>.shoal``, answered by every node."""
