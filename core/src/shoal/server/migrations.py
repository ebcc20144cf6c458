"""Numbered schema migrations, the same for SQLite and PostgreSQL.

Each migration is applied once, in order, inside its own transaction, and
``schema_version`` records the last one applied. Both engines run the same
SQL: the column types used here (TEXT, INTEGER, BIGINT, DOUBLE PRECISION) mean
the same thing to both. A statement that cannot be portable goes into
``postgres`` (or ``sqlite``), which then replaces ``sql`` for that engine.

To change the schema, append a ``Migration``; never edit one that shipped.
Statements are separated by ``;`` at the end of a line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Dialect = Literal["sqlite", "postgres"]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str
    postgres: str | None = None
    sqlite: str | None = None

    def statements(self, dialect: Dialect) -> list[str]:
        text = {"postgres": self.postgres, "sqlite": self.sqlite}[dialect] or self.sql
        return [s.strip() for s in text.split(";\n") if s.strip().rstrip(";").strip()]


MIGRATIONS: list[Migration] = [
    Migration(1, "initial schema", """
    CREATE TABLE nodes (
        public_key TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        virtual_ip TEXT NOT NULL UNIQUE,
        created    DOUBLE PRECISION NOT NULL,
        last_seen  DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE networks (
        name          TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        owner         TEXT NOT NULL REFERENCES nodes(public_key),
        join_mode     TEXT NOT NULL CHECK (join_mode IN ('open', 'approval', 'locked')),
        member_limit  INTEGER NOT NULL,
        type          TEXT NOT NULL CHECK (type IN ('mesh', 'hub-and-spoke', 'gateway')),
        created       DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE members (
        network    TEXT NOT NULL REFERENCES networks(name) ON DELETE CASCADE,
        public_key TEXT NOT NULL REFERENCES nodes(public_key),
        status     TEXT NOT NULL CHECK (status IN ('active', 'pending')),
        hub        INTEGER NOT NULL DEFAULT 0,
        joined     DOUBLE PRECISION NOT NULL,
        lan_route  TEXT,
        PRIMARY KEY (network, public_key)
    );
    CREATE INDEX members_by_key ON members(public_key);
    """),
    # Gateway routes, announced by a member and approved by the owner. A route set
    # with the older "network set --gateway --lan-route" was the owner's own decision:
    # it is carried over as approved.
    Migration(2, "gateway routes", """
    CREATE TABLE routes (
        network    TEXT NOT NULL REFERENCES networks(name) ON DELETE CASCADE,
        prefix     TEXT NOT NULL,
        gateway    TEXT NOT NULL REFERENCES nodes(public_key),
        approved   INTEGER NOT NULL DEFAULT 0,
        masquerade INTEGER NOT NULL DEFAULT 0,
        created    DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (network, prefix)
    );
    INSERT INTO routes (network, prefix, gateway, approved, masquerade, created)
        SELECT network, lan_route, public_key, 1, 0, joined FROM members
        WHERE lan_route IS NOT NULL;
    UPDATE members SET lan_route = NULL
    """),
    # Several servers on one database. A server holds a lease it renews; a
    # node's presence row belongs to the server the node is connected to and
    # dies with that server's lease. Unused (but present) on SQLite.
    Migration(3, "cluster: server leases and presence", """
    CREATE TABLE servers (
        id          TEXT PRIMARY KEY,
        listen      TEXT NOT NULL,
        started     DOUBLE PRECISION NOT NULL,
        lease_until DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE presence (
        public_key TEXT PRIMARY KEY REFERENCES nodes(public_key) ON DELETE CASCADE,
        server_id  TEXT NOT NULL,
        endpoints  TEXT NOT NULL,
        nat        TEXT NOT NULL,
        since      DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX presence_by_server ON presence(server_id);
    CREATE TABLE settings (
        name  TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """),
    # Pre-auth keys (registration = "key"): only a hash of each key's secret is
    # stored; see auth_keys.py.
    Migration(4, "pre-auth keys", """
    CREATE TABLE auth_keys (
        id          TEXT PRIMARY KEY,
        secret_hash TEXT NOT NULL,
        reusable    INTEGER NOT NULL,
        expires     DOUBLE PRECISION,
        network     TEXT,
        created     DOUBLE PRECISION NOT NULL,
        uses        INTEGER NOT NULL DEFAULT 0,
        revoked     INTEGER NOT NULL DEFAULT 0
    );
    """),
]
