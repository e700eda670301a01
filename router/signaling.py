"""WebRTC signaling and ICE server verbs (see docs/p2p.md).

client -> router:
  `["signal", toDid, toConnId, docId]` + JSON body (SDP offer/answer, ICE candidate)
  `["ice-servers"]`
router -> client:
  `["signal", fromDid, fromConnId, docId]` + the same body
  `["ice-servers", ttl]` + `{"iceServers": [...]}` (ttl 0: no expiry)

`signal` follows the rules of `send` (delivered only to a live connId of that
DID, never to the sender) with its own per-connection rate limit, a body size
limit, and its own counters, so relayed payload bytes in /metrics are only
application data. Importing this module registers the parsers with
`router.messages`; `Signaling.install` registers the handlers. Router ->
client frames reach `router.client` users as `Unknown` events; decode them
with `parse_signal` / `parse_ice_servers`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from hearth.config import Option, ServiceConfig
from hearth.types import ConnId, Did, DocumentId
from router.core import Connection, Router
from router.frames import encode_frame
from router.ice import DEFAULT_TURN_TTL, IceConfig, ice_servers, parse_urls
from router.messages import CLIENT_MESSAGES, MAX_ID_LENGTH, MessageError

OPTIONS = (
    Option("stun_urls", parse_urls, (), "comma list of stun: URLs handed to peers"),
    Option("turn_urls", parse_urls, (), "comma list of turn:/turns: URLs handed to peers"),
    Option(
        "turn_secret",
        str,
        "",
        "coturn static-auth-secret; TURN entries are offered only when set",
        secret=True,
    ),
    Option("turn_ttl", int, DEFAULT_TURN_TTL, "seconds a TURN credential stays valid"),
    Option("signal_rate", float, 20.0, "signal frames per second per connection"),
    Option("signal_burst", float, 200.0, "signal frame burst per connection"),
    Option("max_signal_bytes", int, 64 * 1024, "largest signal body (bytes)"),
    Option("ice_rate", float, 1.0, "ice-servers requests per second per connection"),
    Option("ice_burst", float, 10.0, "ice-servers request burst per connection"),
)


def _arity(header: list[Any], verb: str, n: int) -> None:
    if len(header) != n:
        raise MessageError(
            "bad_arity", f"{verb} takes {n - 1} arguments, got {len(header) - 1}", verb
        )


def _id(value: Any, verb: str, what: str) -> str:
    if type(value) is not str or not value or len(value) > MAX_ID_LENGTH:
        raise MessageError("bad_type", f"{verb}: {what} must be a string of 1..2048", verb)
    return value


@dataclass(frozen=True, slots=True)
class Signal:
    """`["signal", did, connId, docId]`: to that connection (c->r) or from it (r->c)."""

    VERB: ClassVar[str] = "signal"
    did: Did
    conn_id: ConnId
    doc: DocumentId
    body: bytes = b""

    @classmethod
    def from_header(cls, header: list[Any], body: bytes = b"") -> Signal:
        _arity(header, "signal", 4)
        return cls(
            Did(_id(header[1], "signal", "did")),
            ConnId(_id(header[2], "signal", "connId")),
            DocumentId(_id(header[3], "signal", "docId")),
            body,
        )

    def to_header(self) -> list[Any]:
        return ["signal", self.did, self.conn_id, self.doc]

    def json(self) -> dict[str, Any]:
        """The body as a JSON object; raises ValueError if it is not one."""
        try:
            value = json.loads(self.body)
        except RecursionError:
            raise ValueError("signal body nests too deeply") from None
        if not isinstance(value, dict):
            raise ValueError("signal body is not a JSON object")
        return value


@dataclass(frozen=True, slots=True)
class IceServersRequest:
    """`["ice-servers"]`, client -> router."""

    VERB: ClassVar[str] = "ice-servers"

    @classmethod
    def from_header(cls, header: list[Any]) -> IceServersRequest:
        _arity(header, "ice-servers", 1)
        return cls()

    def to_header(self) -> list[Any]:
        return ["ice-servers"]


@dataclass(frozen=True, slots=True)
class IceServers:
    """`["ice-servers", ttl]` + `{"iceServers": [...]}`, router -> client."""

    VERB: ClassVar[str] = "ice-servers"
    ttl: int
    servers: list[dict[str, Any]] = field(default_factory=list)


CLIENT_MESSAGES[Signal.VERB] = Signal.from_header
CLIENT_MESSAGES[IceServersRequest.VERB] = IceServersRequest.from_header


def parse_signal(header: list[Any], body: bytes) -> Signal:
    """A router -> client `signal` frame (raises MessageError if malformed)."""
    return Signal.from_header(header, body)


def parse_ice_servers(header: list[Any], body: bytes) -> IceServers:
    """A router -> client `ice-servers` frame (raises MessageError if malformed)."""
    _arity(header, "ice-servers", 2)
    ttl = header[1]
    if type(ttl) is not int or ttl < 0:
        raise MessageError("bad_type", "ice-servers: ttl must be a non-negative int", "ice-servers")
    try:
        value = json.loads(body)
        servers = value["iceServers"]
        if not isinstance(servers, list) or not all(isinstance(s, dict) for s in servers):
            raise TypeError
    except (ValueError, TypeError, KeyError, RecursionError):
        raise MessageError(
            "bad_body", "ice-servers: body must be {iceServers: [...]}", "ice-servers"
        ) from None
    return IceServers(ttl, servers)


@dataclass(frozen=True, slots=True)
class SignalingSettings:
    ice: IceConfig = IceConfig()
    rate: tuple[float, float] = (20.0, 200.0)
    max_signal_bytes: int = 64 * 1024
    ice_rate: tuple[float, float] = (1.0, 10.0)

    def as_info(self) -> dict[str, Any]:
        """These limits as reported in `welcome` (next to the router's own)."""
        return {
            "signal_rate": self.rate[0],
            "signal_burst": self.rate[1],
            "max_signal_bytes": self.max_signal_bytes,
            "ice_rate": self.ice_rate[0],
            "ice_burst": self.ice_rate[1],
        }

    @classmethod
    def from_config(cls, config: ServiceConfig) -> SignalingSettings:
        opts = {opt.name: config.options.get(opt.name, opt.default) for opt in OPTIONS}

        def urls(name: str) -> tuple[str, ...]:
            value = opts[name]
            return parse_urls(value) if isinstance(value, str) else tuple(value)  # type: ignore[arg-type]

        return cls(
            ice=IceConfig(
                stun_urls=urls("stun_urls"),
                turn_urls=urls("turn_urls"),
                turn_secret=str(opts["turn_secret"]),
                turn_ttl=int(opts["turn_ttl"]),  # type: ignore[call-overload]
            ),
            rate=(float(opts["signal_rate"]), float(opts["signal_burst"])),  # type: ignore[arg-type]
            max_signal_bytes=int(opts["max_signal_bytes"]),  # type: ignore[call-overload]
            ice_rate=(float(opts["ice_rate"]), float(opts["ice_burst"])),  # type: ignore[arg-type]
        )


class SignalStats:
    __slots__ = ("frames", "bytes", "ice_requests")

    def __init__(self) -> None:
        self.frames = 0
        self.bytes = 0
        self.ice_requests = 0


class Signaling:
    """The `signal` and `ice-servers` handlers for one router core."""

    def __init__(
        self,
        router: Router,
        settings: SignalingSettings,
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.router = router
        self.settings = settings
        self.wall_clock = wall_clock
        self.stats = SignalStats()

    def install(self) -> None:
        """Register the handlers with the router core and report the limits in `welcome`.

        Call before the router accepts connections.
        """
        settings = self.settings
        self.router.register(Signal, self._on_signal, rate=settings.rate)
        self.router.register(IceServersRequest, self._on_ice_servers, rate=settings.ice_rate)
        self.router.info["limits"].update(settings.as_info())

    def _on_signal(self, conn: Connection, msg: Signal, body: memoryview) -> None:
        router = self.router
        if len(body) > self.settings.max_signal_bytes:
            router.error(
                conn,
                "too_large",
                f"signal body over {self.settings.max_signal_bytes} bytes",
                "signal",
            )
            return
        try:
            value = json.loads(bytes(body))
        except (ValueError, RecursionError):
            value = None
        if not isinstance(value, dict):
            router.error(conn, "bad_body", "signal body must be a JSON object", "signal")
            return
        target = router.connections.get(msg.conn_id)
        if target is None or target.did != msg.did:
            router.error(
                conn, "not_found", "no such connection for that DID", "signal", abuse=False
            )
            return
        if target is conn:
            router.error(conn, "to_self", "cannot signal yourself", "signal", abuse=False)
            return
        if not target.hearth:  # it would never see the signal: say so, use `send`
            router.error(
                conn, "unsupported", "that connection is a Roomy v0 client", "signal", abuse=False
            )
            return
        self.stats.frames += 1
        self.stats.bytes += len(body)
        router.write(target, encode_frame(["signal", conn.did, conn.conn_id, msg.doc], body))

    def _on_ice_servers(self, conn: Connection, _msg: IceServersRequest, _body: memoryview) -> None:
        self.stats.ice_requests += 1
        ttl, answer = ice_servers(self.settings.ice, conn.did, self.wall_clock())
        body = json.dumps(answer, separators=(",", ":")).encode()
        self.router.write(conn, encode_frame(["ice-servers", ttl], body))


class SignalingMetrics(Collector):
    """Signaling counters for /metrics; `get()` returns the live `Signaling` or None."""

    def __init__(self, get: Callable[[], Signaling | None]) -> None:
        self.get = get

    def collect(self) -> Iterable[Metric]:
        signaling = self.get()
        if signaling is None:
            return
        stats = signaling.stats
        yield CounterMetricFamily(
            "hearth_router_signal_frames", "signal frames forwarded", stats.frames
        )
        yield CounterMetricFamily(
            "hearth_router_signal_bytes", "signal body bytes forwarded", stats.bytes
        )
        yield CounterMetricFamily(
            "hearth_router_ice_server_requests", "ice-servers answers sent", stats.ice_requests
        )
