"""The router service: token endpoints, metrics and the WebSocket endpoint.

HTTP routes are a Starlette app; WebSocket upgrades never reach it, uvicorn
hands them to `router.server.RouterProtocol` (see `uvicorn_options`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

import hearth
from hearth.auth import AUTH_OPTIONS, AuthBudget, ServiceAuthVerifier, auth_limits_from_config
from hearth.config import Option, ServiceConfig, positive_int
from hearth.http import (
    EXCEPTION_HANDLERS,
    AccessLogMiddleware,
    common_routes,
    require_auth,
)
from hearth.identity import web_did_for_url
from hearth.service import Service
from hearth.storage import storage_status
from resolver import Resolver
from router.limits import Limits
from router.notify import OPTIONS as NOTIFY_OPTIONS
from router.notify import Notifications, NotifyMetrics
from router.push_routes import push_routes
from router.server import STATE_KEY, RouterProtocol, RouterServer
from router.signaling import OPTIONS as SIGNALING_OPTIONS
from router.signaling import Signaling, SignalingMetrics, SignalingSettings

log = logging.getLogger("hearth.router")

TOKEN_NSIDS = ("chat.roomy.v0.router.token", "chat.hearth.v1.router.token")

_DEFAULTS = Limits()


OPTIONS = (
    Option("max_frame_bytes", int, _DEFAULTS.max_frame_bytes, "largest WebSocket message (bytes)"),
    Option("max_interests", int, _DEFAULTS.max_interests, "docs one connection may listen to"),
    Option(
        "max_connections_per_did",
        int,
        _DEFAULTS.max_connections_per_did,
        "simultaneous connections of one DID",
    ),
    Option("max_connections", int, _DEFAULTS.max_connections, "simultaneous connections in all"),
    Option("rate_frames", float, _DEFAULTS.rate_frames, "frames/s per connection, sustained"),
    Option("burst_frames", float, _DEFAULTS.burst_frames, "frame burst per connection"),
    Option("rate_bytes", float, _DEFAULTS.rate_bytes, "bytes/s per connection, sustained"),
    Option("burst_bytes", float, _DEFAULTS.burst_bytes, "byte burst per connection"),
    Option("rate_listen", float, _DEFAULTS.rate_listen, "listen frames/s per connection"),
    Option("burst_listen", float, _DEFAULTS.burst_listen, "listen burst per connection (0: off)"),
    Option(
        "max_outgoing_bytes",
        int,
        _DEFAULTS.max_outgoing_bytes,
        "unsent bytes queued for one connection before it is closed as a slow consumer",
    ),
    Option("max_errors", float, _DEFAULTS.max_errors, "bad frames tolerated in a burst"),
    Option("error_rate", float, _DEFAULTS.error_rate, "bad frames/s forgiven"),
    Option("ping_interval", float, _DEFAULTS.ping_interval, "seconds between pings (0: off)"),
    Option("idle_timeout", float, _DEFAULTS.idle_timeout, "close after this many silent seconds"),
    Option(
        "max_partial_bytes",
        int,
        _DEFAULTS.max_partial_bytes,
        "bytes of unfinished messages held for all connections together",
    ),
    Option(
        "partial_timeout",
        float,
        _DEFAULTS.partial_timeout,
        "seconds an unfinished message may take from its first byte (0: no limit)",
    ),
    Option("token_ttl", float, 30.0, "seconds a router token stays valid"),
    Option(
        "token_capacity",
        positive_int,
        100_000,
        "live router tokens kept (~500 bytes each); full, the oldest token of the address"
        " holding the most is forgotten",
    ),
    *NOTIFY_OPTIONS,
    *SIGNALING_OPTIONS,
    *AUTH_OPTIONS,
)


def limits_from_config(config: ServiceConfig) -> Limits:
    values: dict[str, Any] = {}
    for name, default in Limits().as_info().items():
        if name in config.options:
            raw = config.options[name]
            values[name] = type(default)(raw)
    return Limits(**values)


class _Metrics(Collector):
    def __init__(self) -> None:
        self.server: RouterServer | None = None

    def collect(self) -> Iterable[Metric]:
        server = self.server
        if server is None:
            return
        router = server.router
        stats = router.stats
        yield GaugeMetricFamily(
            "hearth_router_connections", "open connections", value=len(router.connections)
        )
        yield GaugeMetricFamily("hearth_router_dids", "DIDs connected", value=len(router.by_did))
        yield GaugeMetricFamily(
            "hearth_router_documents", "documents with listeners", value=len(router.docs)
        )
        yield CounterMetricFamily(
            "hearth_router_connections_opened",
            "connections accepted",
            value=stats.connections_total,
        )
        yield CounterMetricFamily("hearth_router_frames_in", "frames received", stats.frames_in)
        yield CounterMetricFamily("hearth_router_bytes_in", "bytes received", stats.bytes_in)
        yield CounterMetricFamily("hearth_router_frames_out", "frames sent", stats.frames_out)
        yield CounterMetricFamily(
            "hearth_router_relayed_frames", "send frames relayed", stats.relayed_frames
        )
        yield CounterMetricFamily(
            "hearth_router_relayed_bytes", "send body bytes relayed", stats.relayed_bytes
        )
        yield CounterMetricFamily(
            "hearth_router_withheld_frames",
            "extension frames not sent to Roomy v0 clients",
            stats.withheld,
        )
        yield GaugeMetricFamily(
            "hearth_router_partial_bytes",
            "bytes of unfinished messages held for all connections",
            value=server.partial_bytes,
        )
        yield GaugeMetricFamily(
            "hearth_router_partial_messages",
            "connections holding an unfinished message",
            value=server.partial_count,
        )
        yield CounterMetricFamily(
            "hearth_router_slow_consumers",
            "connections closed as slow consumers",
            server.slow_consumers,
        )
        errors = CounterMetricFamily(
            "hearth_router_errors", "error frames sent, by code", labels=["code"]
        )
        for code, n in sorted(stats.errors.items()):
            errors.add_metric([code], n)
        yield errors
        closed = CounterMetricFamily(
            "hearth_router_connections_closed", "connections ended, by cause", labels=["cause"]
        )
        for cause, n in sorted(stats.closed.items()):
            closed.add_metric([cause], n)
        yield closed
        refused = CounterMetricFamily(
            "hearth_router_handshakes_refused", "upgrades refused, by reason", labels=["reason"]
        )
        for reason, n in sorted(server.refused.items()):
            refused.add_metric([reason], n)
        yield refused


def create_app(config: ServiceConfig) -> Starlette:
    settings = config.settings
    did = web_did_for_url(settings.url)
    limits = limits_from_config(config)
    token_ttl = config.get_float("token_ttl") if "token_ttl" in config.options else 30.0
    registry = CollectorRegistry()
    metrics = _Metrics()
    registry.register(metrics)
    holder: dict[str, Any] = {}
    registry.register(SignalingMetrics(lambda: holder.get("signaling")))
    registry.register(NotifyMetrics(lambda: holder.get("notifications")))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[dict[str, Any]]:
        # Resolves did:plc / did:web issuers of token-endpoint JWTs.
        resolver = Resolver.from_settings(config.settings)
        # One budget for the token endpoints and the did:key connect: an
        # address's verifications count together wherever they arrive.
        auth_budget = AuthBudget(auth_limits_from_config(config))
        server = RouterServer(
            did,
            limits,
            info={"server": "hearth-router", "version": hearth.__version__},
            token_ttl=token_ttl,
            auth_budget=auth_budget,
        )
        if "token_capacity" in config.options:
            server.tokens.capacity = config.get_int("token_capacity")
        server.start()
        holder["server"] = server
        notifications = await Notifications.open(config, server.router)
        notifications.install()
        holder["notifications"] = notifications
        signaling = Signaling(server.router, SignalingSettings.from_config(config))
        signaling.install()
        holder["signaling"] = signaling
        holder["verifier"] = ServiceAuthVerifier(did, resolver.signing_key, budget=auth_budget)
        metrics.server = server
        try:
            yield {STATE_KEY: server}
        finally:
            await server.aclose()
            await notifications.aclose()
            await resolver.aclose()

    async def token(request: Request) -> Response:
        nsid = request.url.path.rsplit("/", 1)[-1]
        verified = await require_auth(request, holder["verifier"], nsid)
        server: RouterServer = holder["server"]
        value = server.tokens.issue(verified.iss, time.monotonic(), verified.client)
        return JSONResponse({"token": value}, headers={"Cache-Control": "no-store"})

    async def connect_without_upgrade(_request: Request) -> Response:
        return PlainTextResponse("Upgrade: websocket required\n", status_code=400)

    async def health() -> dict[str, Any]:
        server: RouterServer | None = holder.get("server")
        notifications: Notifications | None = holder.get("notifications")
        if server is None or notifications is None:
            return {"connections": 0}
        return {
            "connections": len(server.router.connections),
            "storage": storage_status(notifications.storage_healths()),
        }

    routes = [
        *(Route(f"/xrpc/{nsid}", token) for nsid in TOKEN_NSIDS),
        Route("/connect/as/{did:path}", connect_without_upgrade),
        *push_routes(
            lambda: (holder["notifications"], holder["verifier"]) if "verifier" in holder else None
        ),
        *common_routes(
            did,
            settings.url,
            [("hearth_router", "HearthRouter"), ("roomy_router", "RoomyRouter")],
            registry,
            health,
        ),
    ]
    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    app.add_middleware(AccessLogMiddleware, service="router")
    return app


def uvicorn_options(_config: ServiceConfig) -> dict[str, Any]:
    # WebSocket upgrades go to the router's own protocol (no ASGI per message).
    return {"ws": RouterProtocol}


SERVICE = Service(
    name="router",
    default_port=8703,
    summary="router: authenticated WebSocket routing and matchmaking (Roomy v0 compatible)",
    create_app=create_app,
    options=OPTIONS,
    uvicorn_options=uvicorn_options,
)
