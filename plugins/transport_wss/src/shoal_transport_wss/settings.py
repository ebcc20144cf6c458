"""``[plugin.wss]``: the proxy a node goes through; where a server's WSS listener listens."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shoal.config import parse_endpoint

DEFAULT_PATH = "/shoal/relay"


def _proxy(v: str | None) -> str | None:
    if v is None:
        return v
    u = urlsplit(v)
    if u.scheme != "http" or not u.hostname or u.port is None or u.path not in ("", "/"):
        raise ValueError("must be an HTTP proxy URL like 'http://proxy.example:8888'")
    return v


def _public_url(v: str | None) -> str | None:
    if v is None:
        return v
    u = urlsplit(v)
    if u.scheme != "wss" or not u.hostname:
        raise ValueError("must be a URL like 'wss://relay.example.org:443/shoal/relay'")
    return v


class WssSettings(BaseModel):
    """One table for both sides: a node uses ``proxy``; a server the rest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # node
    proxy: str | None = None            # "http://proxy:8888": HTTP CONNECT proxy to go through
    # server
    listen: str | None = None           # "203.0.113.10:443": run a WSS listener there
    public_url: str | None = None       # announced to nodes; default wss://LISTEN/shoal/relay
    cert_file: str | None = None        # default STATE_DIR/wss-cert.pem (created, self-signed)
    key_file: str | None = None         # default STATE_DIR/wss-key.pem (created, mode 0600)
    max_connections: int = Field(4096, ge=1, le=1_000_000)

    _p = field_validator("proxy")(_proxy)
    _u = field_validator("public_url")(_public_url)

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str | None) -> str | None:
        if v is not None:
            parse_endpoint(v)
        return v

    def announced_url(self) -> str:
        assert self.listen is not None
        return self.public_url or f"wss://{self.listen}{DEFAULT_PATH}"


def redact(url: str | None) -> str | None:
    """A proxy URL fit for logs and status: credentials removed."""
    if url is None:
        return None
    u = urlsplit(url)
    if u.username is None and u.password is None:
        return url
    return f"{u.scheme}://{u.hostname}:{u.port}"
