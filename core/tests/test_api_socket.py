"""The local API socket: mode 0600, and starting two at once leaves the process umask alone."""

import asyncio
import os
import stat

from shoal.api import ApiServer, call


def test_two_api_sockets_started_together(tmp_path):
    async def handler(cmd, args):
        return {"cmd": cmd}

    async def main():
        a = ApiServer(str(tmp_path / "a.sock"), handler)
        b = ApiServer(str(tmp_path / "b.sock"), handler)
        await asyncio.gather(a.start(), b.start())
        try:
            for name in ("a.sock", "b.sock"):
                assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600
            loop = asyncio.get_running_loop()
            assert await loop.run_in_executor(None, call, str(tmp_path / "b.sock"), "x") == \
                {"cmd": "x"}
        finally:
            await a.close()
            await b.close()

    before = os.umask(0o022)
    try:
        asyncio.run(main())
        assert os.umask(0o022) == 0o022
    finally:
        os.umask(before)
