"""``shoal server migrate`` and ``shoal server import --from`` against a real PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shoal.cli import main
from shoal.server.store import MemberRecord, NetworkRecord, NodeRecord, SqliteStore, open_store


def _config(tmp_path: Any, database: str) -> str:
    p = tmp_path / "server.toml"
    p.write_text(f'state_dir = "{tmp_path / "state"}"\nlisten = "127.0.0.1:7400"\n'
                 f'database = "{database}"\n')
    return str(p)


def test_migrate_then_import_a_single_server(pg_url: str, tmp_path: Any,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path, pg_url)
    assert main(["server", "migrate", "-c", cfg]) == 0
    assert "applied migrations 1, 2, 3" in capsys.readouterr().out
    assert main(["server", "migrate", "-c", cfg]) == 0
    assert "up to date" in capsys.readouterr().out

    src = SqliteStore(tmp_path / "old.db")
    src.put_node(NodeRecord("k1", "alice", "100.64.0.7", 1.0, 2.0))
    src.put_node(NodeRecord("k2", "bob", "100.64.0.9", 1.0, 2.0))
    src.put_network(NetworkRecord("lan", "hash", "k1", "approval", 8, "mesh", 1.0))
    src.put_member(MemberRecord("lan", "k1", "active", False, 1.0))
    src.put_member(MemberRecord("lan", "k2", "pending", False, 2.0))
    src.close()
    assert main(["server", "import", "-c", cfg, "--from", str(tmp_path / "old.db")]) == 0
    assert "imported 2 nodes, 1 networks, 2 members" in capsys.readouterr().out

    async def check() -> None:
        s = await open_store(pg_url, str(tmp_path), "s1")
        nodes, nets, members = s.load()
        await s.aclose()
        assert {n.public_key: n.virtual_ip for n in nodes} == {"k1": "100.64.0.7",
                                                               "k2": "100.64.0.9"}
        assert nets == [NetworkRecord("lan", "hash", "k1", "approval", 8, "mesh", 1.0)]
        assert sorted((x.public_key, x.status) for x in members) == [("k1", "active"),
                                                                      ("k2", "pending")]
    asyncio.run(check())
    # never into a database that already holds a state
    assert main(["server", "import", "-c", cfg, "--from", str(tmp_path / "old.db")]) == 1
    assert "empty database" in capsys.readouterr().err


def test_cli_errors_are_one_line(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path, "postgresql://postgres@/nowhere?host=/nonexistent")
    assert main(["server", "migrate", "-c", cfg]) == 1
    err = capsys.readouterr().err
    assert err.startswith("shoal: cannot reach the database") and err.count("\n") == 1
    assert "is PostgreSQL running" in err
    sqlite_cfg = _config(tmp_path, str(tmp_path / "s.db"))
    assert main(["server", "import", "-c", sqlite_cfg, "--from", "x.db"]) == 1
    err = capsys.readouterr().err
    assert "database" in err and err.count("\n") == 1


def test_passwords_never_in_messages() -> None:
    from shoal.server.pg_store import redact

    assert redact("postgresql://shoal:s3cret@db.example:5432/shoal") == \
        "postgresql://shoal:***@db.example:5432/shoal"
    assert redact("postgresql://postgres@/x?host=/tmp/s") == "postgresql://postgres@/x?host=/tmp/s"
