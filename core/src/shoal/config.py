"""Node and server configuration (TOML), validated with pydantic (ARCHITECTURE §6).

Unknown keys are errors; every error names the key. Each plugin validates its
own ``[plugin.NAME]`` table through ``shoal_config_register_settings``.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import pluggy
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shoal.errors import ConfigError
from shoal.identity import decode_public_key

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_endpoint(value: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` to ``(host, port)``; the host must be an IP literal."""
    if not isinstance(value, str) or ":" not in value:
        raise ValueError("expected ADDRESS:PORT")
    host, _, port_s = value.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address") from None
    if not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise ValueError(f"port {port_s!r} is not in 1..65535")
    return (host, int(port_s))


def _check_endpoint(v: str) -> str:
    parse_endpoint(v)
    return v


def _check_key(v: str) -> str:
    decode_public_key(v)
    return v


class ServerRef(Strict):
    """The coordination server, or a cluster of them (``addresses``, tried in order).

    ``public_key`` is shared by every address (one key for the cluster), or
    ``public_keys`` pins one key per address, in the same order.
    """

    address: str | None = None
    addresses: list[str] = Field(default_factory=list, max_length=32)
    public_key: str | None = None
    public_keys: list[str] = Field(default_factory=list, max_length=32)
    auth_key: str | None = Field(None, min_length=1, max_length=200)   # pre-auth key
    auth_key_file: str | None = None

    @field_validator("address")
    @classmethod
    def _a(cls, v: str | None) -> str | None:
        return None if v is None else _check_endpoint(v)

    @field_validator("addresses")
    @classmethod
    def _as(cls, v: list[str]) -> list[str]:
        for e in v:
            _check_endpoint(e)
        if len(set(v)) != len(v):
            raise ValueError("lists an address twice")
        return v

    @field_validator("public_key")
    @classmethod
    def _k(cls, v: str | None) -> str | None:
        return None if v is None else _check_key(v)

    @field_validator("public_keys")
    @classmethod
    def _ks(cls, v: list[str]) -> list[str]:
        for k in v:
            _check_key(k)
        return v

    @model_validator(mode="after")
    def _rules(self) -> ServerRef:
        if self.address is None and not self.addresses:
            raise ValueError("give address = \"HOST:PORT\" or addresses = [\"HOST:PORT\", ...]")
        if self.address is not None and self.addresses:
            raise ValueError("give either address or addresses, not both")
        if self.public_key is None and not self.public_keys:
            raise ValueError("public_key is missing (the server's key, from 'shoal server init')")
        if self.public_key is not None and self.public_keys:
            raise ValueError("give either public_key (shared) or public_keys (one per address)")
        if self.public_keys and len(self.public_keys) != len(self.all_addresses):
            raise ValueError(f"public_keys has {len(self.public_keys)} keys for "
                             f"{len(self.all_addresses)} addresses; give one per address")
        return self

    @property
    def all_addresses(self) -> list[str]:
        return [self.address] if self.address is not None else list(self.addresses)

    def endpoints(self) -> list[tuple[str, str]]:
        """(address, public key) pairs, in failover order."""
        addrs = self.all_addresses
        keys = self.public_keys or [self.public_key or ""] * len(addrs)
        return list(zip(addrs, keys))

    @model_validator(mode="after")
    def _one_key(self) -> ServerRef:
        if self.auth_key is not None and self.auth_key_file is not None:
            raise ValueError("give either auth_key or auth_key_file, not both")
        return self


class InterfaceConfig(Strict):
    name: str = "shoal0"
    mode: Literal["tun", "tap"] = "tun"
    mtu: int = Field(1420, ge=576, le=9000)
    address: str | None = None  # "100.64.0.2/10"; only without [server]
    #: TUN offloads (virtio-net header, TSO/USO, coalesced writes) where the kernel has them
    offload: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not IFNAME_RE.match(v):
            raise ValueError("must be 1-15 characters of letters, digits, '_', '.', '-'")
        return v

    @field_validator("address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is None:
            return v
        iface = ipaddress.ip_interface(v)  # raises ValueError with a clear message
        if iface.version != 4 or iface.network.prefixlen >= 31:
            raise ValueError("must be an IPv4 address with a prefix shorter than /31, e.g. 100.64.0.2/10")
        if iface.ip in (iface.network.network_address, iface.network.broadcast_address):
            raise ValueError("is the network or broadcast address of its prefix")
        return v


class ApiConfig(Strict):
    socket: str = ""


class MetricsConfig(Strict):
    """``[metrics]``: Prometheus text exposition at ``http://LISTEN/metrics`` (off by default)."""

    listen: str | None = None   # "127.0.0.1:9464"

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str | None) -> str | None:
        return None if v is None else _check_endpoint(v)


class AdminConfig(Strict):
    """``[admin]`` (server only): the admin web page (off by default).

    Access needs the token printed by ``shoal server admin-token``.
    """

    listen: str | None = None   # "127.0.0.1:7480"
    token_file: str | None = None   # default: STATE_DIR/admin.token

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str | None) -> str | None:
        return None if v is None else _check_endpoint(v)


class TunnelConfig(Strict):
    """Data-plane tuning; the defaults follow WireGuard's timers."""

    #: order is preference; the default puts AES-256-GCM first where the CPU has AES
    #: instructions (several times faster there), ChaCha20-Poly1305 first elsewhere
    ciphers: list[Literal["chacha20-poly1305", "aes-256-gcm"]] = Field(
        default_factory=lambda: preferred_ciphers(), min_length=1)
    keepalive: float = Field(10.0, ge=0, le=3600)
    rekey_after_time: float = Field(120.0, ge=1, le=170)
    rekey_after_messages: int = Field(1 << 60, ge=16, le=1 << 60)


def cpu_has_aes(cpuinfo: str | None = None) -> bool:
    """True when the CPU advertises AES instructions (x86 ``aes``, Arm ``aes`` feature)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features") and "aes" in value.split():
            return True
    return False


def preferred_ciphers(cpuinfo: str | None = None) -> list[str]:
    """Both ciphers, the faster one on this CPU first (each peer still negotiates)."""
    if cpu_has_aes(cpuinfo):
        return ["aes-256-gcm", "chacha20-poly1305"]
    return ["chacha20-poly1305", "aes-256-gcm"]


class RouteEntry(Strict):
    """A LAN this node announces as gateway; a plain string means ``{prefix = "..."}``."""

    prefix: str
    masquerade: bool = False   # rewrite members' sources to this node's LAN address

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        from shoal.routing.rules import RouteRefused, parse_prefix

        try:
            return str(parse_prefix(v))
        except RouteRefused as e:
            raise ValueError(str(e)) from None


class NetworkEntry(Strict):
    name: str
    password: str | None = None
    password_file: str | None = None
    create: bool = False
    routes: list[RouteEntry] = Field(default_factory=list, max_length=64)

    @field_validator("routes", mode="before")
    @classmethod
    def _routes(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"prefix": x} if isinstance(x, str) else x for x in v]
        return v

    @model_validator(mode="after")
    def _one_password(self) -> NetworkEntry:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give either password or password_file, not both")
        return self


class StaticPeer(Strict):
    name: str
    public_key: str
    endpoint: str | None = None
    virtual_ip: str
    persistent_keepalive: float = Field(25.0, ge=0)

    _k = field_validator("public_key")(_check_key)

    @field_validator("endpoint")
    @classmethod
    def _ep(cls, v: str | None) -> str | None:
        """``ADDRESS:PORT`` on the main transport, or ``PLUGIN=TEXT`` for another
        plugin's transport (that transport parses TEXT when the node starts)."""
        if v is None:
            return None
        plugin, sep, rest = v.partition("=")
        if sep:
            if not NAME_RE.match(plugin) or not rest:
                raise ValueError("expected ADDRESS:PORT or PLUGIN=ENDPOINT")
            return v
        return _check_endpoint(v)

    @field_validator("virtual_ip")
    @classmethod
    def _vip(cls, v: str) -> str:
        if ipaddress.ip_address(v).version != 4:
            raise ValueError("must be an IPv4 address")
        return v

    @field_validator("name")
    @classmethod
    def _pname(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError("must be letters, digits, '.', '_', '-' (max 63)")
        return v


class NodeConfig(Strict):
    name: str
    state_dir: str
    plugins: list[str] = Field(default_factory=lambda: ["udp"])
    server: ServerRef | None = None
    interface: InterfaceConfig = Field(default_factory=InterfaceConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    tunnel: TunnelConfig = Field(default_factory=TunnelConfig)
    networks: list[NetworkEntry] = Field(default_factory=list)
    peers: list[StaticPeer] = Field(default_factory=list)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    plugin: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError("must be letters, digits, '.', '_', '-' (max 63)")
        return v

    @model_validator(mode="after")
    def _rules(self) -> NodeConfig:
        if self.server is None and self.interface.address is None:
            raise ValueError("interface.address is required when there is no [server]")
        if self.server is None and self.networks:
            raise ValueError("[[networks]] needs a [server] (networks live on a coordination "
                             "server); add [server] or remove [[networks]]")
        names = [p.name for p in self.peers]
        if len(set(names)) != len(names):
            raise ValueError("peers: two peers have the same name")
        keys = [p.public_key for p in self.peers]
        if len(set(keys)) != len(keys):
            raise ValueError("peers: two peers have the same public_key")
        vips = [p.virtual_ip for p in self.peers]
        if len(set(vips)) != len(vips):
            raise ValueError("peers: two peers have the same virtual_ip")
        return self

    @property
    def api_socket(self) -> str:
        return self.api.socket or str(Path(self.state_dir) / "api.sock")


class LimitsConfig(Strict):
    """``[limits]`` in server.toml: admission rate limits and connection bounds.

    Each ``*_per_source`` / ``*_per_network`` count is per ``window`` seconds;
    reaching it locks that source (or network) out for a window, doubling on
    repeated lockouts."""

    window: float = Field(60.0, gt=0, le=86400)
    logins_per_source: int = Field(120, ge=1, le=1_000_000)
    registrations_per_source: int = Field(30, ge=1, le=1_000_000)
    password_failures_per_source: int = Field(5, ge=1, le=1_000_000)
    password_failures_per_network: int = Field(100, ge=1, le=1_000_000)
    connections: int = Field(0, ge=0, le=10_000_000)    # 0: half the process's descriptors
    connections_per_source: int = Field(512, ge=1, le=10_000_000)
    handshakes: int = Field(1024, ge=1, le=1_000_000)   # connections still in the handshake
    handshakes_per_source: int = Field(64, ge=1, le=1_000_000)   # beyond: its oldest is shed
    hash_workers: int = Field(2, ge=1, le=64)
    hash_queue_per_source: int = Field(64, ge=1, le=100_000)
    hash_queue: int = Field(1024, ge=1, le=1_000_000)


class ServerConfig(Strict):
    state_dir: str
    listen: str = "0.0.0.0:7400"
    discovery: list[str] = Field(default_factory=list)
    address_pool: str = "100.64.0.0/10"
    database: str | None = None
    registration: Literal["open", "key", "closed"] = "open"
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    plugins: list[str] = Field(default_factory=list)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    admin: AdminConfig = Field(default_factory=AdminConfig)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    plugin: dict[str, dict[str, Any]] = Field(default_factory=dict)

    _l = field_validator("listen")(_check_endpoint)

    @field_validator("discovery")
    @classmethod
    def _disc(cls, v: list[str]) -> list[str]:
        for e in v:
            parse_endpoint(e)
        return v

    @field_validator("address_pool")
    @classmethod
    def _pool(cls, v: str) -> str:
        net = ipaddress.ip_network(v)
        if net.version != 4 or net.prefixlen > 30:
            raise ValueError("must be an IPv4 network of at least /30")
        for private in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"):
            if net.overlaps(ipaddress.ip_network(private)):
                raise ValueError(f"overlaps the RFC 1918 block {private}; use 100.64.0.0/10")
        return v


# ----------------------------------------------------------------- loading
def _format_validation_error(path: str, err: ValidationError) -> str:
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
    msg = e["msg"]
    if e["type"] == "extra_forbidden":
        msg = "unknown key"
    elif e["type"] == "missing":
        msg = "required key is missing"
    msg = msg.removeprefix("Value error, ")
    return f"{path}: {loc}: {msg}"


def read_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config file: {e.strerror}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None


def _validate(model: type[BaseModel], data: dict[str, Any], path: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(path, e)) from None


def load_node_config(path: str | Path) -> NodeConfig:
    cfg: NodeConfig = _validate(NodeConfig, read_toml(path), str(path))
    return cfg


def load_server_config(path: str | Path) -> ServerConfig:
    cfg: ServerConfig = _validate(ServerConfig, read_toml(path), str(path))
    return cfg


def plugin_settings(cfg: NodeConfig | ServerConfig, pm: pluggy.PluginManager, path: str = "config"
                    ) -> dict[str, BaseModel]:
    """Validate each ``[plugin.NAME]`` table with the model its plugin registered."""
    models: dict[str, type[BaseModel]] = {}

    def register(name: str, model: type[BaseModel]) -> None:
        if name in models:
            raise ConfigError(f"two plugins register settings for [plugin.{name}]")
        models[name] = model

    pm.hook.shoal_config_register_settings(register=register)
    out: dict[str, BaseModel] = {}
    for name in cfg.plugin:
        if name not in models:
            raise ConfigError(f"{path}: plugin.{name}: no enabled plugin named {name!r} takes settings")
    for name, model in models.items():
        table = cfg.plugin.get(name, {})
        try:
            out[name] = model.model_validate(table)
        except ValidationError as e:
            raise ConfigError(_format_validation_error(path, e).replace(
                f"{path}: ", f"{path}: plugin.{name}.", 1)) from None
    return out
