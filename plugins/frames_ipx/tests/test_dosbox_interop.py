"""Interop with the real DOSBox (Debian ``dosbox``), headless; skipped where it is not installed.

DOSBox connects to one bridge with ``ipxnet connect``; a DOSBox-compatible client
on a second bridge (127.0.0.2 and 127.0.0.3 stand in for two nodes' overlay
addresses) sends ``ipxnet ping``, which DOSBox answers by itself.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess

import pytest
from shoal_frames_ipx.bridge import IpxnetService
from shoal_frames_ipx.dosbox_client import IpxnetClient

pytestmark = pytest.mark.skipif(shutil.which("dosbox") is None, reason="dosbox is not installed")


def free_port(ip: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


def test_dosbox_registers_and_answers_a_ping_from_another_node(tmp_path):
    async def main():
        bridge_port = free_port("127.0.0.2")
        a = IpxnetService(("127.0.0.1", 0), bridge_port, lambda: "127.0.0.2",
                          lambda: {socket.inet_aton("127.0.0.3")})
        b = IpxnetService(("127.0.0.1", 0), bridge_port, lambda: "127.0.0.3",
                          lambda: {socket.inet_aton("127.0.0.2")})
        await a.start()
        await b.start()
        conf = tmp_path / "dosbox.conf"
        conf.write_text(f"[ipx]\nipx=true\n[autoexec]\nipxnet connect 127.0.0.1 {a.listen[1]}\n")
        env = dict(os.environ, SDL_VIDEODRIVER="dummy", SDL_AUDIODRIVER="dummy",
                   HOME=str(tmp_path))
        with (tmp_path / "dosbox.log").open("w") as log:
            dosbox = await asyncio.create_subprocess_exec(
                "dosbox", "-conf", str(conf), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=env)
        try:
            for _ in range(150):
                if a.bridge.clients or dosbox.returncode is not None:
                    break
                await asyncio.sleep(0.1)
            assert a.bridge.clients, (tmp_path / "dosbox.log").read_text()[-2000:]
            (dos,) = a.bridge.clients.values()
            client = IpxnetClient(b.listen)
            await asyncio.to_thread(client.register)
            for _ in range(3):  # DOSBox polls its socket on its own timer
                replies = await asyncio.to_thread(client.ping, 1.0)
                if replies:
                    break
            assert replies == [dos.node]
            client.close()
        finally:
            dosbox.terminate()
            try:
                await asyncio.wait_for(dosbox.wait(), 5)
            except TimeoutError:
                dosbox.kill()
                await dosbox.wait()
            a.close()
            b.close()
        # DOSBox logged the node number it was given (its output is flushed at exit)
        text = (tmp_path / "dosbox.log").read_text()
        nid = int.from_bytes(dos.node[4:], "big")
        assert f"IPX address is 127:0:0:2:{nid >> 8}:{nid & 255}" in text, text[-1000:]

    asyncio.run(main())
