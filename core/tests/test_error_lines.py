"""User mistakes end in one line naming the file and the fix, never a traceback."""

import asyncio
import os
import stat

import pytest

from shoal import identity
from shoal.api import ApiServer
from shoal.cli import main
from shoal.config import ConfigError, load_node_config
from shoal.errors import ShoalError
from shoal.node_api import NodeApi


def test_key_file_is_a_directory(tmp_path):
    (tmp_path / "private.key").mkdir()
    with pytest.raises(ShoalError, match=r"private.key: key file is a directory; remove it"):
        identity.load_or_create(tmp_path)


def test_key_file_is_a_dangling_symlink(tmp_path):
    (tmp_path / "private.key").symlink_to(tmp_path / "gone")
    with pytest.raises(ShoalError, match=r"private.key: key file is a dangling symbolic link"):
        identity.load_or_create(tmp_path)


def test_state_dir_under_a_file(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(ShoalError, match=r"f/state: state_dir lies under a file"):
        identity.load_or_create(tmp_path / "f" / "state")


def test_api_socket_directory_cannot_be_created(tmp_path):
    (tmp_path / "f").write_text("")
    api = ApiServer(str(tmp_path / "f" / "sub" / "api.sock"), lambda c, a: None)
    with pytest.raises(ShoalError, match=r"API socket.s directory.*\[api\] socket"):
        asyncio.run(api.start())


def test_networks_without_server(tmp_path):
    cfg = tmp_path / "n.toml"
    cfg.write_text('name = "n"\nstate_dir = "/tmp/n"\n[interface]\naddress = "100.64.0.2/10"\n'
                   '[[networks]]\nname = "lan"\npassword = "x"\n')
    with pytest.raises(ConfigError, match=r"n.toml: .*\[\[networks\]\] needs a \[server\]"):
        load_node_config(cfg)


def test_server_without_key_is_told_to_init(tmp_path, capsys):
    cfg = tmp_path / "s.toml"
    cfg.write_text(f'state_dir = "{tmp_path}/state"\nlisten = "127.0.0.1:7999"\n')
    assert main(["server", "run", "-c", str(cfg)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"run 'shoal server init -c {cfg}'" in err


def test_server_files_are_private(tmp_path, capsys):
    cfg = tmp_path / "s.toml"
    cfg.write_text(f'state_dir = "{tmp_path}/state"\nlisten = "127.0.0.1:7999"\n')
    old = os.umask(0o022)
    try:
        assert main(["server", "init", "-c", str(cfg)]) == 0
    finally:
        os.umask(old)
    for f in (tmp_path / "state").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) & 0o077 == 0, f


def test_api_ping_with_a_bad_count():
    with pytest.raises(ShoalError, match="count must be a whole number"):
        asyncio.run(NodeApi(object()).handle("ping",  # type: ignore[arg-type]
                                             {"peer": "bob", "count": "lots"}))
