"""hearth.http: what every service answers when a handler fails."""

from __future__ import annotations

import logging

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hearth.auth import AuthBudget, AuthLimits, ServiceAuthVerifier
from hearth.http import EXCEPTION_HANDLERS, AccessLogMiddleware, XrpcError, require_auth
from hearth.jwt import Signer, mint_service_jwt
from tests.servers import serve_app


class _Boom(Exception):
    pass


async def boom(_request: Request) -> Response:
    raise _Boom("secret-detail at /srv/keys")


async def refused(_request: Request) -> Response:
    raise XrpcError(400, "InvalidRequest", "no")


async def test_unexpected_exception_is_an_atproto_500_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Starlette(
        routes=[Route("/xrpc/boom", boom), Route("/xrpc/refused", refused)],
        middleware=[Middleware(AccessLogMiddleware, service="test")],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    caplog.set_level(logging.INFO)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
        r = await client.get("/xrpc/boom")
        assert r.status_code == 500
        assert r.headers["content-type"] == "application/json"
        assert r.json() == {"error": "InternalServerError", "message": "internal server error"}
        assert "secret" not in r.text and "_Boom" not in r.text
        # Own errors still use their own status and body.
        r = await client.get("/xrpc/refused")
        assert r.status_code == 400 and r.json()["error"] == "InvalidRequest"
    with_traceback = [
        rec for rec in caplog.records if rec.exc_info and isinstance(rec.exc_info[1], _Boom)
    ]
    assert len(with_traceback) == 1
    access = [rec.getMessage() for rec in caplog.records if rec.name == "hearth.access"]
    assert any("/xrpc/boom 500" in line for line in access), access


async def test_refusals_a_good_token_may_get_are_429_with_retry_after() -> None:
    async def no_lookup(_did: object, *, fresh: bool = False) -> object:
        raise AssertionError("did:key issuers need no lookup")

    aud, lxm = "did:web:svc.test", "chat.hearth.v1.test"
    budget = AuthBudget(AuthLimits(rate=0.1, burst=4, per_issuer=1))
    verifier = ServiceAuthVerifier(aud, no_lookup, budget=budget)  # type: ignore[arg-type]

    async def guarded(request: Request) -> Response:
        token = await require_auth(request, verifier, lxm)
        return Response(token.iss)

    app = Starlette(routes=[Route("/xrpc/x", guarded)], exception_handlers=EXCEPTION_HANDLERS)
    a, b = Signer.generate(), Signer.generate()

    def auth(s: Signer) -> dict[str, str]:
        return {"Authorization": "Bearer " + mint_service_jwt(s, iss=s.did_key, aud=aud, lxm=lxm)}

    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/xrpc/x", headers=auth(a))).status_code == 200
        r = await client.get("/xrpc/x", headers=auth(a))  # a second live token of one issuer
        assert r.status_code == 429 and r.json()["error"] == "RateLimitExceeded"
        assert int(r.headers["retry-after"]) >= 1
        assert (await client.get("/xrpc/x", headers=auth(b))).status_code == 200
        # The fifth verification from this address within seconds: its budget is spent.
        r = await client.get("/xrpc/x", headers={"Authorization": "Bearer nonsense"})
        assert r.status_code == 401 and r.json()["error"] == "InvalidToken"
        r = await client.get("/xrpc/x", headers=auth(Signer.generate()))
        assert r.status_code == 429 and r.json()["error"] == "RateLimitExceeded"
        assert 1 <= int(r.headers["retry-after"]) <= 10
        assert "rate_limited" in r.json()["message"]
