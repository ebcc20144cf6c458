"""Shared fixtures: a throwaway PostgreSQL per test module that asks for one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shoal.testing.postgres import PostgresCluster, unavailable


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[PostgresCluster]:
    reason = unavailable()
    if reason:
        pytest.skip(f"PostgreSQL tests skipped: {reason}")
    with PostgresCluster() as pg:
        yield pg


@pytest.fixture
def pg_url(pg_cluster: PostgresCluster) -> str:
    """A fresh, empty database for each test."""
    return pg_cluster.create_database()
