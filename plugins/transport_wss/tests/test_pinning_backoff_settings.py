"""Certificate pinning, reconnect backoff, and the [plugin.wss] table."""

import stat
import tomllib

import pytest

from shoal.config import NodeConfig, plugin_settings
from shoal.errors import ConfigError
from shoal.plugins import list_plugins, load_plugins

from shoal_transport_wss import pinning
from shoal_transport_wss.backoff import Backoff
from shoal_transport_wss.settings import WssSettings, redact


def test_certificate_created_once_with_a_private_key(tmp_path):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    der = pinning.ensure_certificate(cert, key, "203.0.113.10")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert pinning.ensure_certificate(cert, key, "203.0.113.10") == der   # kept across restarts
    assert pinning.server_context(cert, key) is not None


def test_fingerprint_spellings_and_mismatch_is_one_line(tmp_path):
    der = pinning.ensure_certificate(tmp_path / "c.pem", tmp_path / "k.pem", "relay.example")
    fp = pinning.fingerprint(der)
    colons = ":".join(fp[7:][i:i + 2] for i in range(0, 64, 2)).upper()
    assert pinning.normalize(colons) == pinning.normalize(f"SHA256:{fp[7:]}") == fp
    pinning.check(der, colons, "203.0.113.10:443")
    other = "sha256:" + "0" * 64
    with pytest.raises(pinning.PinMismatch) as e:
        pinning.check(der, other, "203.0.113.10:443")
    msg = str(e.value)
    assert "\n" not in msg and "203.0.113.10:443" in msg and "refusing" in msg
    with pytest.raises(ValueError):
        pinning.normalize("sha256:abc")


def test_backoff_grows_to_a_cap_and_resets():
    b = Backoff(first=0.5, cap=4.0, rand=lambda: 0.5)   # no jitter at 0.5
    assert [b.delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    b.reset()
    assert b.delay() == 0.5
    jittered = Backoff(first=1.0, rand=lambda: 0.0).delay()
    assert jittered == 0.75


def cfg(table: str) -> NodeConfig:
    data = tomllib.loads(f'name = "n"\nstate_dir = "/tmp/n"\nplugins = ["wss"]\n'
                         f'[interface]\naddress = "100.64.0.1/10"\n[plugin.wss]\n{table}\n')
    return NodeConfig.model_validate(data)


def test_registered_and_settings_validated():
    assert "wss" in {i.name for i in list_plugins()}
    pm = load_plugins(["relay", "wss"])
    s = plugin_settings(cfg('proxy = "http://198.51.100.30:8888"'), pm)["wss"]
    assert isinstance(s, WssSettings) and s.proxy == "http://198.51.100.30:8888"
    for bad, key in (('proxy = "socks5://x:1"', "proxy"), ('proxy = "http://nowhere"', "proxy"),
                     ('listen = "relay:443"', "listen"), ('public_url = "https://x/"', "public_url"),
                     ("bogus = 1", "bogus")):
        with pytest.raises(ConfigError, match=rf"plugin\.wss\.{key}"):
            plugin_settings(cfg(bad), pm)
    assert WssSettings(listen="203.0.113.10:443").announced_url() == \
        "wss://203.0.113.10:443/shoal/relay"


def test_proxy_credentials_never_shown():
    assert redact("http://user:secret@198.51.100.30:8888") == "http://198.51.100.30:8888"
    assert redact("http://198.51.100.30:8888") == "http://198.51.100.30:8888"
