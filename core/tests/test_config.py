import pytest
from shoal.config import load_node_config, load_server_config, plugin_settings
from shoal.errors import ConfigError
from shoal.identity import StaticKeypair
from shoal.plugins import load_plugins

KEY = StaticKeypair.generate().public_b64

BASE = f'''
name = "alice"
state_dir = "/tmp/x"
plugins = ["udp"]
[interface]
address = "100.64.0.1/10"
[[peers]]
name = "bob"
public_key = "{KEY}"
endpoint = "198.51.100.2:41641"
virtual_ip = "100.64.0.2"
'''


def load(tmp_path, text):
    p = tmp_path / "node.toml"
    p.write_text(text)
    return load_node_config(p)


def test_valid(tmp_path):
    cfg = load(tmp_path, BASE)
    assert cfg.interface.mtu == 1420 and cfg.interface.mode == "tun"
    assert cfg.peers[0].virtual_ip == "100.64.0.2"
    assert cfg.api_socket.endswith("api.sock")


@pytest.mark.parametrize("text, needle", [
    (BASE + "colour = 1\n", "colour: unknown key"),
    (BASE.replace('[interface]', '[interface]\nmtu = 10'), "interface.mtu"),
    (BASE.replace('mode = "tun"', '') .replace('[interface]', '[interface]\nmode = "tab"'),
     "interface.mode"),
    (BASE.replace('198.51.100.2:41641', '198.51.100.2'), "peers.0.endpoint"),
    (BASE.replace('198.51.100.2:41641', 'example.org:1'), "not an IP address"),
    (BASE.replace(KEY, "bm90IGEga2V5"), "peers.0.public_key"),
    (BASE.replace('address = "100.64.0.1/10"', ''), "interface.address is required"),
    (BASE.replace('name = "alice"', ''), "name: required key is missing"),
    (BASE.replace('100.64.0.1/10', '100.64.0.0/10'), "network or broadcast"),
    ("name = [", "not valid TOML"),
])
def test_errors_name_the_key(tmp_path, text, needle):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, text)
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_node_config(tmp_path / "nope.toml")


def test_plugin_table_validated_by_plugin(tmp_path):
    cfg = load(tmp_path, BASE + "[plugin.udp]\nport = 99999\n")
    pm = load_plugins(cfg.plugins)
    with pytest.raises(ConfigError, match=r"plugin\.udp\.port"):
        plugin_settings(cfg, pm, "node.toml")
    cfg = load(tmp_path, BASE + "[plugin.udp]\nprot = 1\n")
    with pytest.raises(ConfigError, match=r"plugin\.udp\.prot: unknown key"):
        plugin_settings(cfg, pm, "node.toml")
    cfg = load(tmp_path, BASE + "[plugin.nosuch]\nx = 1\n")
    with pytest.raises(ConfigError, match="no enabled plugin named 'nosuch'"):
        plugin_settings(cfg, pm, "node.toml")
    cfg = load(tmp_path, BASE + "[plugin.udp]\nport = 5000\n")
    assert plugin_settings(cfg, pm)["udp"].port == 5000


def test_server_pool_never_rfc1918(tmp_path):
    p = tmp_path / "server.toml"
    p.write_text('state_dir = "/tmp/s"\naddress_pool = "10.0.0.0/8"\n')
    with pytest.raises(ConfigError, match="RFC 1918"):
        load_server_config(p)
    p.write_text('state_dir = "/tmp/s"\n')
    assert load_server_config(p).address_pool == "100.64.0.0/10"


def _server_cfg(tmp_path, server_table):
    return load(tmp_path, f'name = "n"\nstate_dir = "/tmp/x"\n[server]\n{server_table}\n')


def test_server_addresses_shared_or_pinned_keys(tmp_path):
    k2 = StaticKeypair.generate().public_b64
    cfg = _server_cfg(tmp_path, f'addresses = ["198.51.100.10:7400", "198.51.100.20:7400"]\n'
                                f'public_key = "{KEY}"')
    assert cfg.server.endpoints() == [("198.51.100.10:7400", KEY), ("198.51.100.20:7400", KEY)]
    cfg = _server_cfg(tmp_path, f'addresses = ["198.51.100.10:7400", "198.51.100.20:7400"]\n'
                                f'public_keys = ["{KEY}", "{k2}"]')
    assert cfg.server.endpoints()[1] == ("198.51.100.20:7400", k2)
    cfg = _server_cfg(tmp_path, f'address = "198.51.100.10:7400"\npublic_key = "{KEY}"')
    assert cfg.server.endpoints() == [("198.51.100.10:7400", KEY)]


@pytest.mark.parametrize("table, needle", [
    (f'public_key = "{KEY}"', "give address"),
    (f'address = "198.51.100.1:1"\naddresses = ["198.51.100.2:1"]\npublic_key = "{KEY}"',
     "either address or addresses"),
    ('addresses = ["198.51.100.1:1"]', "public_key is missing"),
    (f'addresses = ["198.51.100.1:1", "198.51.100.2:1"]\npublic_keys = ["{KEY}"]',
     "one per address"),
    (f'addresses = ["198.51.100.1:1", "nowhere"]\npublic_key = "{KEY}"', "server.addresses"),
])
def test_server_addresses_errors_name_the_key(tmp_path, table, needle):
    with pytest.raises(ConfigError) as e:
        _server_cfg(tmp_path, table)
    assert needle in str(e.value) and "server" in str(e.value)


def test_default_cipher_order_follows_the_cpu() -> None:
    from shoal.config import preferred_ciphers
    x86 = "processor\t: 0\nflags\t\t: fpu sse2 aes pclmulqdq avx\n"
    arm = "processor\t: 0\nFeatures\t: fp asimd aes pmull sha2\n"
    plain = "processor\t: 0\nflags\t\t: fpu sse2 avx\n"
    assert preferred_ciphers(x86)[0] == "aes-256-gcm"
    assert preferred_ciphers(arm)[0] == "aes-256-gcm"
    assert preferred_ciphers(plain) == ["chacha20-poly1305", "aes-256-gcm"]
    assert preferred_ciphers("") == ["chacha20-poly1305", "aes-256-gcm"]
