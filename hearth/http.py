"""Starlette pieces every service uses: XRPC errors, bounded JSON bodies, did.json,
health, metrics, access log.

Request bodies: handlers read one only through `read_body` / `read_json_body`.
They refuse a declared `Content-Length` over the endpoint's limit before
reading a byte, stop reading as soon as a streamed body passes it (413), and
refuse JSON nested deeper than a limit before parsing it (400), and refuse
strings holding a lone surrogate (400, `hearth.jsontext`), so a body costs
at most its endpoint's limit in memory whatever the client declares or sends.
Endpoints that need authentication call `require_auth` before reading the body.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import hearth
from hearth.auth import AuthError, ServiceAuthVerifier, VerifiedToken, bearer_token
from hearth.jsontext import decoded_encodable
from hearth.storage import StorageUnavailable

access_log = logging.getLogger("hearth.access")


class XrpcError(Exception):
    """Raise inside a handler to answer with an atproto error body."""

    def __init__(
        self, status: int, error: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = headers


def xrpc_error(
    status: int, error: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status, headers=headers)


async def xrpc_error_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, XrpcError)
    return xrpc_error(exc.status, exc.error, exc.message, exc.headers)


async def not_found_handler(_request: Request, _exc: Exception) -> Response:
    return xrpc_error(404, "NotFound", "no such endpoint")


async def method_not_allowed_handler(_request: Request, _exc: Exception) -> Response:
    return xrpc_error(405, "MethodNotAllowed", "method not allowed")


async def storage_unavailable_handler(_request: Request, exc: Exception) -> Response:
    # The store says why (locked, disk full, corrupt); retrying later may work.
    return xrpc_error(503, "StorageUnavailable", str(exc))


async def internal_error_handler(_request: Request, _exc: Exception) -> Response:
    # Starlette re-raises the exception after this response is sent, so the
    # server (uvicorn) logs it once with its traceback; logging it here too
    # would log it twice. The caller learns nothing about it.
    return xrpc_error(500, "InternalServerError", "internal server error")


EXCEPTION_HANDLERS: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
    XrpcError: xrpc_error_handler,
    404: not_found_handler,
    405: method_not_allowed_handler,
    StorageUnavailable: storage_unavailable_handler,
    # Anything else a handler lets escape: an atproto body instead of text/plain.
    Exception: internal_error_handler,
}


async def require_auth(
    request: Request, verifier: ServiceAuthVerifier, lxm: str | None, *, client: str | None = None
) -> VerifiedToken:
    """Verify the request's service-auth JWT and record its jti, or raise XrpcError.

    For a handler that may still refuse the request after authentication,
    `check_auth`, its own checks, then `commit_auth` (no await in between)
    leave a refused request's token unused.
    """
    verified = await check_auth(request, verifier, lxm, client=client)
    commit_auth(verifier, verified)
    return verified


async def check_auth(
    request: Request, verifier: ServiceAuthVerifier, lxm: str | None, *, client: str | None = None
) -> VerifiedToken:
    """Check the request's service-auth JWT without using it up; raise XrpcError if refused.

    The budget charged is `client`'s, by default the socket peer (uvicorn
    replaces it with the `X-Forwarded-For` address when the peer is one of
    its `--forwarded-allow-ips`, loopback by default).
    """
    if client is None and request.client is not None:
        client = request.client.host
    try:
        token = bearer_token(request.headers.get("authorization"))
        return await verifier.check(token, lxm=lxm, client=client)
    except AuthError as e:
        raise auth_refusal(e) from e


def commit_auth(verifier: ServiceAuthVerifier, verified: VerifiedToken) -> None:
    """Record a checked token as used (`ServiceAuthVerifier.commit`); raise XrpcError if refused."""
    try:
        verifier.commit(verified)
    except AuthError as e:
        raise auth_refusal(e) from e


def auth_refusal(e: AuthError) -> XrpcError:
    """The XRPC error for a refused token: 401, or 429 with Retry-After when it may be good."""
    if e.retry_after is not None:
        # A spent budget says nothing about the token: tell the client when to
        # retry instead of calling its (possibly good) token invalid.
        retry = str(max(1, math.ceil(e.retry_after)))
        return XrpcError(
            429, "RateLimitExceeded", f"{e.reason}: {e.message}", {"Retry-After": retry}
        )
    error = {"missing": "AuthenticationRequired", "expired": "ExpiredToken"}.get(
        e.reason, "InvalidToken"
    )
    return XrpcError(401, error, f"{e.reason}: {e.message}")


DEFAULT_MAX_JSON_DEPTH = 32


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused with XrpcError 413 as soon as it passes `max_bytes`.

    A `Content-Length` over the limit is refused before anything is read; a
    body streamed without one is counted while it arrives. Memory held is at
    most `max_bytes` plus one received chunk (64 KiB). A client that goes away
    mid-body is a 400 (nobody reads it, but nothing is logged as a crash).
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise XrpcError(400, "InvalidRequest", "bad Content-Length")
        if int(declared) > max_bytes:
            raise XrpcError(413, "PayloadTooLarge", f"body is limited to {max_bytes} bytes")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_bytes:
                raise XrpcError(413, "PayloadTooLarge", f"body is limited to {max_bytes} bytes")
    except ClientDisconnect as e:
        raise XrpcError(400, "InvalidRequest", "client went away during the body") from e
    return bytes(body)


async def read_json_body(
    request: Request,
    max_bytes: int,
    *,
    max_depth: int = DEFAULT_MAX_JSON_DEPTH,
    allow_lone_surrogates: bool = False,
) -> dict[str, Any]:
    """The body as a JSON object, or XrpcError: 413 over `max_bytes` (see `read_body`),
    400 `InvalidRequest` for anything but a UTF-8 JSON object nested at most
    `max_depth` deep whose strings hold no lone surrogate (see `parse_json_object`)."""
    return parse_json_object(
        await read_body(request, max_bytes),
        max_depth=max_depth,
        allow_lone_surrogates=allow_lone_surrogates,
    )


def parse_json_object(
    raw: bytes, *, max_depth: int = DEFAULT_MAX_JSON_DEPTH, allow_lone_surrogates: bool = False
) -> dict[str, Any]:
    """UTF-8 bytes to a JSON object, or XrpcError 400; nesting past `max_depth` is
    refused before parsing (the parser would otherwise recurse once per level),
    and so is a string holding a lone surrogate (`"\\ud800"`: it could be neither
    echoed nor stored), unless `allow_lone_surrogates` (for a handler that
    encodes such strings with `surrogatepass` itself and answers for them)."""
    if _too_deep(raw, max_depth):
        raise XrpcError(400, "InvalidRequest", f"JSON nested deeper than {max_depth} levels")
    try:
        # Strict UTF-8 first: json.loads(bytes) would let encoded surrogates through.
        text = raw.decode("utf-8")
        value = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise XrpcError(400, "InvalidRequest", "body must be JSON in UTF-8") from e
    if not isinstance(value, dict):
        raise XrpcError(400, "InvalidRequest", "body must be a JSON object")
    if not allow_lone_surrogates and not decoded_encodable(text, value):
        raise XrpcError(400, "InvalidRequest", "strings must not contain lone surrogates")
    return value


# A JSON string (brackets inside it do not nest), or the unterminated rest of
# one. Possessive, so a scan is linear whatever the text.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+"?')
_OPEN_CLOSE = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


def _too_deep(raw: bytes, max_depth: int) -> bool:
    """Whether JSON text nests brackets deeper than `max_depth` (malformed text may
    count as too deep; it is refused either way). C-speed passes: at most
    `max_depth` + 1 over the brackets of the text."""
    if raw.count(b"[") + raw.count(b"{") <= max_depth:
        return False
    brackets = _JSON_STRING.sub(b"", raw).translate(_OPEN_CLOSE, _NOT_BRACKETS)
    for _ in range(max_depth):
        if not brackets:
            return False
        brackets = brackets.replace(b"[]", b"")  # one level of innermost pairs
    return bool(brackets)


def did_document(did: str, url: str, services: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """A did:web document naming this service's endpoint(s): (fragment, type) pairs."""
    return {
        "@context": ["https://www.w3.org/ns/did/v1"],
        "id": did,
        "service": [
            {"id": f"#{fragment}", "type": kind, "serviceEndpoint": url}
            for fragment, kind in services
        ],
    }


def common_routes(
    did: str,
    url: str,
    services: Sequence[tuple[str, str]],
    registry: CollectorRegistry,
    health: Callable[[], Awaitable[dict[str, Any]]] | None = None,
) -> list[Route]:
    """`/.well-known/did.json`, `/xrpc/_health` and `/metrics`.

    `health` returns fields added to the health body; a `"storage"` field
    other than `"ok"` makes the answer a 503.
    """
    doc = did_document(did, url, services)

    async def did_json(_request: Request) -> Response:
        return JSONResponse(doc)

    async def health_route(_request: Request) -> Response:
        body: dict[str, Any] = {"version": hearth.__version__}
        if health is not None:
            body.update(await health())
        # "storage": "ok" | "error: <why>" (hearth.storage); failing storage is a 503.
        storage = body.get("storage")
        status = 503 if isinstance(storage, str) and storage != "ok" else 200
        return JSONResponse(body, status_code=status)

    async def metrics(_request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/.well-known/did.json", did_json),
        Route("/xrpc/_health", health_route),
        Route("/metrics", metrics),
    ]


def with_cors(app: ASGIApp) -> ASGIApp:
    """Let browser apps on other origins call the XRPC endpoints (as atproto services do).

    Any origin, no cookies: authorization travels in the `Authorization` header,
    which a page can only send if it holds the token. WebSocket scopes pass through.
    """
    return CORSMiddleware(
        app,
        allow_origins=["*"],
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["authorization", "content-type", "atproto-proxy", "atproto-accept-labelers"],
        max_age=86400,
    )


class AccessLogMiddleware:
    """Logs method, path (never the query string: it may carry tokens), status, time."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            # The 500 is sent by Starlette's outermost middleware, outside this one.
            status = status or 500
            raise
        finally:
            access_log.info(
                "%s %s %s %d %.1fms",
                self.service,
                scope.get("method"),
                scope.get("path"),
                status,
                (time.perf_counter() - start) * 1000,
            )
