"""Running Shoal as a service: systemd units and start-up progress for ``shoal up``."""
