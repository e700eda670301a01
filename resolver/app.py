"""The resolver service: atproto identity XRPC endpoints over the resolver library."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hearth.config import ServiceConfig
from hearth.http import EXCEPTION_HANDLERS, AccessLogMiddleware, common_routes, xrpc_error
from hearth.identity import web_did_for_url
from hearth.service import Service
from resolver.errors import ResolveError
from resolver.resolver import Resolver

MAX_PARAM = 2048


def create_app(config: ServiceConfig, resolver: Resolver | None = None) -> Starlette:
    settings = config.settings
    res = resolver or Resolver.from_settings(settings)
    did = web_did_for_url(settings.url)
    registry = CollectorRegistry()
    requests = Counter(
        "resolver_requests",
        "XRPC requests by method and outcome",
        ["method", "outcome"],
        registry=registry,
    )
    cache_entries = Gauge(
        "resolver_cache_entries", "Entries in the caches", ["cache"], registry=registry
    )
    cache_entries.labels("handle").set_function(lambda: len(res.handles))
    cache_entries.labels("did").set_function(lambda: len(res.documents))
    upstream = Gauge(
        "resolver_upstream_queries", "Upstream queries made", ["kind"], registry=registry
    )
    upstream.labels("dns").set_function(lambda: res.upstream.dns_queries)
    upstream.labels("http").set_function(lambda: res.upstream.http_requests)

    def param(request: Request, name: str) -> str:
        value = request.query_params.get(name)
        if not value:
            raise _BadParam(f"missing parameter {name!r}")
        if len(value) > MAX_PARAM:
            raise _BadParam(f"parameter {name!r} too long")
        return value

    async def run(method: str, request: Request, body: Any) -> Response:
        try:
            result = await body(request)
        except _BadParam as e:
            requests.labels(method, "400").inc()
            return xrpc_error(400, "InvalidRequest", str(e))
        except ResolveError as e:
            requests.labels(method, str(e.status)).inc()
            return xrpc_error(e.status, e.error, e.message)
        requests.labels(method, "200").inc()
        return JSONResponse(result)

    async def resolve_handle(request: Request) -> Response:
        async def body(req: Request) -> dict[str, Any]:
            return {"did": await res.resolve_handle(param(req, "handle"))}

        return await run("resolveHandle", request, body)

    async def resolve_did(request: Request) -> Response:
        async def body(req: Request) -> dict[str, Any]:
            return {"didDoc": await res.resolve_did(param(req, "did"))}

        return await run("resolveDid", request, body)

    async def resolve_identity(request: Request) -> Response:
        async def body(req: Request) -> dict[str, Any]:
            ident = await res.resolve_identity(param(req, "identifier"))
            return {"did": ident.did, "handle": ident.handle, "didDoc": ident.did_doc}

        return await run("resolveIdentity", request, body)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await res.aclose()

    async def health() -> dict[str, Any]:
        return {"service": "resolver", "did": did}

    routes = [
        Route("/xrpc/com.atproto.identity.resolveHandle", resolve_handle),
        Route("/xrpc/com.atproto.identity.resolveDid", resolve_did),
        Route("/xrpc/com.atproto.identity.resolveIdentity", resolve_identity),
        *common_routes(
            did, settings.url, [("hearth_resolver", "HearthResolver")], registry, health
        ),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(AccessLogMiddleware, service="resolver")],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )


class _BadParam(Exception):
    pass


SERVICE = Service(
    name="resolver",
    default_port=8701,
    summary="atproto handle and DID resolver",
    create_app=create_app,
)
