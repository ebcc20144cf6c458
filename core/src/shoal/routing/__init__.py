"""Gateway routes: LAN prefixes a member announces, the owner approves, every other member
reaches through that member (ARCHITECTURE §3, gateway networks)."""
