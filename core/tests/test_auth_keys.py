"""Pre-auth keys: format, hashing, states, both stores, durations."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest

from shoal.errors import ShoalError
from shoal.server import auth_keys as ak
from shoal.server.auth_key_store import auth_key_store
from shoal.server.store import open_store


def test_generate_parse_check():
    text, rec = ak.generate(1000.0, reusable=False, expires=2000.0, network="club")
    kid, secret = ak.parse(text)
    assert kid == rec.id and secret not in rec.secret_hash   # only a hash is kept
    assert ak.check(rec, secret, 1500.0) is None
    assert "expired" in ak.check(rec, secret, 2000.0)
    assert "not known" in ak.check(rec, "x" * 43, 1500.0)
    assert "not known" in ak.check(None, secret, 1500.0)
    assert ak.parse("shoal-key-zz-nope") is None


async def _v(x: Any) -> Any:
    return await x if inspect.isawaitable(x) else x


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "s.db")
    return str(request.getfixturevalue("pg_url"))


def test_store_round_trip_single_use_revoke_and_prune(database: str, tmp_path: Any) -> None:
    async def main() -> None:
        store = await open_store(database, str(tmp_path), server_id="s1", listen="127.0.0.1:1")
        keys = auth_key_store(store)
        try:
            text, rec = ak.generate(1000.0)
            await _v(keys.put(rec))
            assert await _v(keys.get(rec.id)) == rec
            assert await _v(keys.use(rec.id)) and not await _v(keys.use(rec.id))
            _, multi = ak.generate(1001.0, reusable=True)
            await _v(keys.put(multi))
            assert await _v(keys.use(multi.id)) and await _v(keys.use(multi.id))
            assert await _v(keys.revoke(multi.id)) and not await _v(keys.use(multi.id))
            assert not await _v(keys.revoke("00000000"))
            states = [k.state(1002.0) for k in await _v(keys.all())]
            assert states == ["used", "revoked"]
            assert await _v(keys.prune_nodes(2000.0)) == []
        finally:
            await _v(store.aclose())
    asyncio.run(main())


def test_durations():
    assert ak.parse_duration("90") == 90 and ak.parse_duration("15m") == 900
    assert ak.parse_duration("2d") == 172800 and ak.parse_duration("1w") == 604800
    with pytest.raises(ShoalError, match="not a duration"):
        ak.parse_duration("soon")
