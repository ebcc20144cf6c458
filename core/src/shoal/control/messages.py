"""Control-plane messages between a node and the coordination server.

Each message is a JSON object with ``"type"`` and ``"v"`` (protocol version),
validated into a frozen pydantic model; unknown fields are ignored (forward
compatible), wrong types and values are errors. The closed union per
direction is consumed with ``match``.

Node -> server: hello, request, report, signal, heartbeat, bye.
Server -> node: welcome, result, networks, peers, signal, heartbeat, error, grants.

``signal`` carries a short opaque text from a plugin on one node to the same
plugin on a peer (e.g. a transport's session parameters); the server forwards
it only between nodes that see each other, rate-limited.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

VERSION = 1
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
Key = Annotated[str, Field(min_length=44, max_length=44)]
Endpoint = Annotated[str, Field(max_length=64)]
MAX_PATH_REPORTS = 1024


class Msg(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    v: int = VERSION


# ------------------------------------------------------------ node -> server
class Hello(Msg):
    type: Literal["hello"] = "hello"
    name: Name
    version: str = Field("", max_length=32)
    endpoints: list[Endpoint] = Field(default_factory=list, max_length=16)
    udp_port: int = Field(0, ge=0, le=65535)
    auth_key: str | None = Field(None, max_length=200)   # pre-auth key (registration = "key")


Op = Literal["create", "join", "leave", "list", "members", "approve", "evict", "set", "delete",
             "route_add", "route_approve", "route_remove", "routes"]


class Request(Msg):
    type: Literal["request"] = "request"
    id: int = Field(ge=0)
    op: Op
    args: dict[str, Any] = Field(default_factory=dict)


class NatInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    mapping: str = "unknown"        # RFC 4787 words
    filtering: str = "unknown"
    public_endpoint: str | None = None
    udp: bool = True                # False: UDP is blocked, only TCP works


class Report(Msg):
    """What discovery found: the node's candidates and NAT behaviour (trickled)."""

    type: Literal["report"] = "report"
    endpoints: list[Endpoint] = Field(default_factory=list, max_length=16)
    nat: NatInfo = Field(default_factory=NatInfo)


class PathReport(BaseModel):
    """One peer's current path as the node sees it (shown on the server's admin page)."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    public_key: Key
    path: Literal["direct", "relay", "none"]
    transport: str | None = Field(None, max_length=32)
    rtt_ms: float | None = Field(None, ge=0, le=600_000)


SIGNAL_MAX = 1024


class SignalTo(Msg):
    """A plugin's message for a peer, forwarded by the server (node -> server)."""

    type: Literal["signal"] = "signal"
    to: Key
    kind: Name
    data: str = Field("", max_length=SIGNAL_MAX)


class Heartbeat(Msg):
    """Keeps the session alive. From a node, ``paths`` (when they changed since the
    last heartbeat) carries its current path to each peer; older servers ignore it."""

    type: Literal["heartbeat"] = "heartbeat"
    paths: list[PathReport] | None = Field(None, max_length=MAX_PATH_REPORTS)


class Bye(Msg):
    type: Literal["bye"] = "bye"


# ------------------------------------------------------------ request arguments
class Args(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CreateArgs(Args):
    name: Name
    password: str = Field(min_length=1, max_length=1024)
    join_mode: Literal["open", "approval", "locked"] = "open"
    member_limit: int = Field(256, ge=1, le=65536)
    type: Literal["mesh", "hub-and-spoke", "gateway"] = "mesh"


class JoinArgs(Args):
    name: Name
    password: str = Field(max_length=1024)


class NetworkArgs(Args):
    name: Name


class MemberArgs(Args):
    name: Name
    member: str = Field(min_length=1, max_length=64)


class SetArgs(Args):
    name: Name
    password: str | None = Field(None, min_length=1, max_length=1024)
    join_mode: Literal["open", "approval", "locked"] | None = None
    member_limit: int | None = Field(None, ge=1, le=65536)
    type: Literal["mesh", "hub-and-spoke", "gateway"] | None = None
    owner: str | None = Field(None, max_length=64)
    hub_add: list[str] = Field(default_factory=list, max_length=64)
    hub_remove: list[str] = Field(default_factory=list, max_length=64)
    gateway: str | None = Field(None, max_length=64)
    lan_route: str | None = Field(None, max_length=43)


class RouteArgs(Args):
    """``route_add``: the calling member announces ``prefix`` (a LAN it reaches) in ``name``;
    ``route_approve`` / ``route_remove``: the owner (or, for remove, the gateway) acts on it."""

    name: Name
    prefix: str = Field(min_length=1, max_length=43)
    masquerade: bool = False


ARGS: dict[str, type[Args]] = {
    "create": CreateArgs, "join": JoinArgs, "leave": NetworkArgs, "list": Args,
    "members": NetworkArgs, "approve": MemberArgs, "evict": MemberArgs, "set": SetArgs,
    "delete": NetworkArgs, "route_add": RouteArgs, "route_approve": RouteArgs,
    "route_remove": RouteArgs, "routes": NetworkArgs,
}


# ------------------------------------------------------------ server -> node
class RelayGrant(BaseModel):
    """A relay the node may use, and the credential the relay checks (see relay plugin)."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    udp: str | None = None          # "203.0.113.10:3480"
    tcp: str | None = None
    #: other ways to reach the same relay, by transport (e.g. {"wss": "203.0.113.10:443"})
    endpoints: dict[str, str] = Field(default_factory=dict, max_length=8)
    token: str                      # base64 HMAC(relay secret, node key | expiry | tags)
    expires: int
    tags: list[Annotated[str, Field(max_length=16)]] = Field(default_factory=list, max_length=64)


class Welcome(Msg):
    type: Literal["welcome"] = "welcome"
    virtual_ip: str
    prefix_len: int = Field(ge=8, le=30)
    server_version: str = ""
    observed: str | None = None    # the node's address as the server saw it
    discovery: list[str] = Field(default_factory=list)   # RFC 5780 endpoints, config order
    relays: list[RelayGrant] = Field(default_factory=list)


class Grants(Msg):
    """Fresh relay grants: pushed before the old ones expire and when the node's
    networks change (a grant names the networks the relay may forward within)."""

    type: Literal["grants"] = "grants"
    relays: list[RelayGrant] = Field(default_factory=list)


class Result(Msg):
    type: Literal["result"] = "result"
    id: int
    ok: bool
    code: str | None = None        # machine-readable error: wrong_password, full, ...
    error: str | None = None       # one readable sentence
    data: Any = None


class RouteInfo(BaseModel):
    """A LAN prefix a member (the gateway) announces in a network."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    prefix: str
    gateway: Key                   # the gateway's public key
    gateway_name: str = ""
    approved: bool = False         # only approved routes are installed by members
    masquerade: bool = False       # the gateway rewrites members' sources to its LAN address


class NetworkSummary(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    name: str
    type: str
    role: str                      # owner | hub | member | pending
    join_mode: str
    member_limit: int
    members: int                   # active members
    pending: int = 0               # shown to the owner only
    online: int = 0
    routes: list[RouteInfo] = Field(default_factory=list)


class Networks(Msg):
    type: Literal["networks"] = "networks"
    networks: list[NetworkSummary]


class PeerInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    public_key: Key
    name: str
    virtual_ip: str
    endpoints: list[str] = Field(default_factory=list)
    networks: list[str] = Field(default_factory=list)
    nat: NatInfo = Field(default_factory=NatInfo)


class Peers(Msg):
    """Tunnels to build (``up``) and tear down (``down``); ``full`` replaces the set."""

    type: Literal["peers"] = "peers"
    full: bool = False
    up: list[PeerInfo] = Field(default_factory=list)
    down: list[Key] = Field(default_factory=list)


class Signal(Msg):
    """A plugin's message from a peer (server -> node); ``sender`` is vouched for by the server."""

    type: Literal["signal"] = "signal"
    sender: Key
    kind: Name
    data: str = Field("", max_length=SIGNAL_MAX)


class ErrorMsg(Msg):
    """Fatal for the session (e.g. address pool exhausted); the server closes after it."""

    type: Literal["error"] = "error"
    code: str
    error: str
    retry_after: int | None = None   # seconds, when the refusal is a rate limit


ToServer = Annotated[Hello | Request | Report | SignalTo | Heartbeat | Bye,
                     Field(discriminator="type")]
ToNode = Annotated[Welcome | Result | Networks | Peers | Signal | Heartbeat | ErrorMsg
                   | Grants,
                   Field(discriminator="type")]
_to_server: TypeAdapter[Any] = TypeAdapter(ToServer)
_to_node: TypeAdapter[Any] = TypeAdapter(ToNode)


class BadMessage(ValueError):
    """Undecodable or invalid message: the receiver counts it and closes that connection."""


def encode(msg: Msg) -> bytes:
    return msg.model_dump_json(exclude_none=True).encode()


def _decode(adapter: TypeAdapter[Any], data: bytes) -> Any:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadMessage(f"not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise BadMessage("not a JSON object")
    if obj.get("v") != VERSION:
        raise BadMessage(f"unsupported protocol version {obj.get('v')!r}")
    try:
        return adapter.validate_python(obj)
    except ValidationError as e:
        raise BadMessage(f"invalid {obj.get('type')!r} message: {e.errors()[0]['msg']}") from None


def decode_to_server(data: bytes) -> Hello | Request | Report | SignalTo | Heartbeat | Bye:
    return _decode(_to_server, data)  # type: ignore[no-any-return]


def decode_to_node(data: bytes) -> (Welcome | Result | Networks | Peers | Signal | Heartbeat
                                   | ErrorMsg | Grants):
    return _decode(_to_node, data)  # type: ignore[no-any-return]


def parse_args(op: str, args: dict[str, Any]) -> Args:
    try:
        return ARGS[op].model_validate(args)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise BadMessage(f"{op}: {loc}: {err['msg']}") from None
