"""The resolver service over real HTTP: endpoints, status codes and atproto error bodies."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hearth.config import ServiceConfig
from resolver.app import create_app
from tests.servers import serve_app
from tests.world import World


@pytest.fixture
async def client(world: World) -> AsyncIterator[httpx.AsyncClient]:
    config = ServiceConfig("resolver", world.settings(resolver_timeout=0.5, port=8701))
    async with serve_app(create_app(config)) as url:
        async with httpx.AsyncClient(base_url=url) as c:
            yield c


async def test_resolve_handle(world: World, client: httpx.AsyncClient) -> None:
    ident = world.new_plc_identity()
    r = await client.get(
        "/xrpc/com.atproto.identity.resolveHandle", params={"handle": ident.handle}
    )
    assert r.status_code == 200
    assert r.json() == {"did": ident.did}


async def test_resolve_did_and_identity(world: World, client: httpx.AsyncClient) -> None:
    ident = world.new_web_identity()
    r = await client.get("/xrpc/com.atproto.identity.resolveDid", params={"did": ident.did})
    assert r.status_code == 200 and r.json()["didDoc"]["id"] == ident.did
    r = await client.get(
        "/xrpc/com.atproto.identity.resolveIdentity", params={"identifier": ident.did}
    )
    assert r.status_code == 200
    assert r.json()["handle"] == ident.handle
    assert r.json()["did"] == ident.did


@pytest.mark.parametrize(
    ("path", "params", "status", "error"),
    [
        ("resolveHandle", {}, 400, "InvalidRequest"),
        ("resolveHandle", {"handle": "not a handle"}, 400, "InvalidRequest"),
        ("resolveHandle", {"handle": "nobody.test"}, 404, "HandleNotFound"),
        ("resolveDid", {"did": "did:nope"}, 400, "InvalidRequest"),
        ("resolveDid", {"did": "did:plc:" + "b" * 24}, 404, "DidNotFound"),
        ("resolveIdentity", {"identifier": "x" * 5000}, 400, "InvalidRequest"),
    ],
)
async def test_errors(
    client: httpx.AsyncClient, path: str, params: dict[str, str], status: int, error: str
) -> None:
    r = await client.get(f"/xrpc/com.atproto.identity.{path}", params=params)
    assert r.status_code == status
    body = r.json()
    assert body["error"] == error
    assert isinstance(body["message"], str) and body["message"]


@pytest.mark.parametrize(
    ("path", "name", "value"),
    [
        ("resolveDid", "did", "did:plc:" + "a" * 24 + "\n"),
        ("resolveDid", "did", "did:web:a.test%3A%C2%B2"),
        ("resolveDid", "did", "did:web:a.test%3A%D9%A3"),
        ("resolveDid", "did", "did:web:a.test\n"),
        ("resolveHandle", "handle", "alice.test\n"),
        ("resolveHandle", "handle", "alice.test\r\n"),
        ("resolveIdentity", "identifier", "did:web:a.test%3A%C2%B2"),
        ("resolveIdentity", "identifier", "alice.test\n"),
    ],
)
async def test_parser_edge_inputs_are_400_never_500(
    world: World, client: httpx.AsyncClient, path: str, name: str, value: str
) -> None:
    r = await client.get(f"/xrpc/com.atproto.identity.{path}", params={name: value})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "InvalidRequest"
    assert not world.http_requests and not world.dns_queries


async def test_did_web_on_loopback_is_not_fetched(client: httpx.AsyncClient) -> None:
    seen: list[str] = []

    async def answer(request: Request) -> Response:
        seen.append(request.url.path)
        return JSONResponse({"id": "whatever"})

    async with serve_app(Starlette(routes=[Route("/{path:path}", answer)])) as url:
        port = url.rsplit(":", 1)[1]
        for did in (f"did:web:127.0.0.1%3A{port}", f"did:web:localhost%3A{port}"):
            r = await client.get("/xrpc/com.atproto.identity.resolveDid", params={"did": did})
            assert r.status_code == 404, r.text
            assert r.json()["error"] == "DidNotFound"
    assert seen == []


async def test_upstream_timeout_is_502(world: World, client: httpx.AsyncClient) -> None:
    handle = world.new_handle()
    world.slow_dns.add(f"_atproto.{handle}")
    world.slow_http.add(handle)
    r = await client.get("/xrpc/com.atproto.identity.resolveHandle", params={"handle": handle})
    assert r.status_code == 502
    assert r.json()["error"] == "UpstreamFailure"


async def test_well_known_health_metrics(client: httpx.AsyncClient) -> None:
    r = await client.get("/.well-known/did.json")
    assert r.json()["id"] == "did:web:127.0.0.1%3A8701"
    assert r.json()["service"][0]["id"] == "#hearth_resolver"
    r = await client.get("/xrpc/_health")
    assert r.status_code == 200 and "version" in r.json()
    r = await client.get("/metrics")
    assert "resolver_requests" in r.text
    r = await client.get("/xrpc/com.atproto.nothing")
    assert r.status_code == 404 and r.json()["error"] == "NotFound"
