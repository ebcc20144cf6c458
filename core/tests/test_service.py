"""Service units (``shoal service install``) and ``shoal up`` start-up progress."""

from __future__ import annotations

import io
import shutil
import subprocess

import pytest
from shoal import cli
from shoal.service import progress, units
from shoal.service.progress import Progress


def test_install_writes_units_with_this_shoal(tmp_path, capsys):
    rc = cli.main(["service", "install", "--unit-dir", str(tmp_path), "--no-reload",
                   "--shoal", "/opt/shoal/bin/shoal"])
    assert rc == 0
    node = (tmp_path / "shoal@.service").read_text()
    assert "ExecStart=/opt/shoal/bin/shoal up -c /etc/shoal/%i.toml" in node
    assert "KillSignal=SIGTERM" in node and "WantedBy=multi-user.target" in node
    assert "ExecStart=/opt/shoal/bin/shoal server run -c /etc/shoal/server.toml" in \
        (tmp_path / "shoal-server.service").read_text()
    assert "ExecStart=/opt/shoal/bin/shoal relay run -c /etc/shoal/relay.toml" in \
        (tmp_path / "shoal-relay.service").read_text()
    assert "systemctl enable --now shoal@NAME" in capsys.readouterr().out


def test_install_failure_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli.main(["service", "install", "--unit-dir", str(blocker / "x"), "--no-reload"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("shoal: cannot install the units")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_units_verify(tmp_path):
    written = units.install(str(tmp_path), units.shoal_executable(), reload=False)
    inst = tmp_path / "shoal@alice.service"
    inst.symlink_to(tmp_path / "shoal@.service")
    r = subprocess.run(["systemd-analyze", "verify", "--man=no",
                        *(str(p) for p in written if "@" not in p.name), str(inst)],
                       check=False, capture_output=True, text=True, timeout=60)
    problems = [line for line in r.stderr.splitlines()
                if "shoal" in line and "Failed to" not in line]
    assert not problems, r.stderr


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_only_at_a_terminal_outside_systemd():
    assert progress.wanted(Tty(), {})
    assert not progress.wanted(io.StringIO(), {})
    assert not progress.wanted(Tty(), {"INVOCATION_ID": "abc"})
    assert not progress.wanted(Tty(), {"JOURNAL_STREAM": "8:1234"})


def status(online=False, vip=None, nat=None, peers=()):
    return {"node": {"interface": "shoal0", "server": "203.0.113.10:7400", "online": online,
                     "virtual_ip": vip, "nat": nat or {"mapping": "unknown"}},
            "peers": [{"name": n, "online": up, "path": "direct", "transport": "udp",
                       "rtt_ms": 1.25} for n, up in peers]}


def test_progress_steps_in_order_then_ready():
    p = Progress(has_server=True)
    assert p.step(status(), 0.0) == ["interface shoal0 up", "logging in to 203.0.113.10:7400 ..."]
    assert p.step(status(), 0.2) == []
    assert p.step(status(True, "100.64.0.2", peers=[("bob", False)]), 0.4) == \
        ["logged in as 100.64.0.2"]
    nat = {"mapping": "endpoint-independent", "filtering": "address-dependent",
           "public_endpoint": "203.0.113.5:41641"}
    assert p.step(status(True, "100.64.0.2", nat, [("bob", True), ("carol", False)]), 0.6) == [
        ("NAT found: mapping endpoint-independent, filtering address-dependent, "
         "public 203.0.113.5:41641"),
        "peer bob connected (direct via udp, 1.2 ms)"]
    assert not p.done
    assert p.step(status(True, "100.64.0.2", nat, [("bob", True), ("carol", True)]), 0.8) == [
        "peer carol connected (direct via udp, 1.2 ms)", "ready: 2/2 peers connected"]
    assert p.done


def test_progress_alone_and_gives_up_with_a_summary():
    p = Progress(has_server=True)
    p.step(status(True, "100.64.0.2"), 0.0)
    assert p.step(status(True, "100.64.0.2"), 1.0) == []
    assert p.step(status(True, "100.64.0.2"), 3.5) == ["ready: no other member is online yet"]
    q = Progress(has_server=True)
    q.step(status(True, "100.64.0.2", peers=[("bob", False)]), 0.0)
    assert q.step(status(True, "100.64.0.2", peers=[("bob", False)]), 46.0) == [
        "still starting after 45 s: 0/1 peers connected, waiting for bob (see 'shoal status')"]
