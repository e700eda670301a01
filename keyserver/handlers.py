"""HTTP handlers: parse the request, check the caller, ask the keyring, render.

Nothing here logs a key or a token; the access log never sees query strings.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hearth.auth import AuthError, ServiceAuthVerifier
from hearth.http import XrpcError, check_auth, commit_auth, read_body
from hearth.types import Did
from keyserver import messages
from keyserver.cache import AnswerCache
from keyserver.keyring import (
    Corrupt,
    DirectoryUnavailable,
    Keyring,
    KeyringError,
    LimitExceeded,
    NoKeys,
    OwnerHoldsKey,
    PublicView,
    RateLimited,
    Unsupported,
)
from keyserver.messages import BadRequest

log = logging.getLogger("hearth.keyserver")

PUBLIC = "chat.hearth.v1.key.public"
PRIVATE = "chat.hearth.v1.key.private"
REGISTER = "chat.hearth.v1.key.register"
ROTATE = "chat.hearth.v1.key.rotate"
ROOMY_PUBLIC = "chat.roomy.v0.key.public"
ROOMY_PRIVATE = "chat.roomy.v0.key"

Handler = Callable[[Request], Awaitable[Response]]


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "hearth_keyserver_requests",
            "XRPC requests by method and HTTP status",
            ["method", "status"],
            registry=registry,
        )
        self.created = Counter(
            "hearth_keyserver_keys_created",
            "Key generations stored, by cause (lookup, owner, rotate, register)",
            ["how"],
            registry=registry,
        )
        self.auth_failures = Counter(
            "hearth_keyserver_auth_failures",
            "Refused service-auth tokens by reason",
            ["reason"],
            registry=registry,
        )
        self.private_served = Counter(
            "hearth_keyserver_private_keys_served",
            "Responses that carried private keys to their owner",
            registry=registry,
        )


def _error(
    status: int, error: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    return JSONResponse({"error": error, "message": message}, status_code=status, headers=headers)


def _refusal(exc: KeyringError) -> Response:
    message = str(exc)
    if isinstance(exc, OwnerHoldsKey):
        return _error(404, "KeyHeldByOwner", message)
    if isinstance(exc, NoKeys):
        return _error(404, "NotFound", message)
    if isinstance(exc, RateLimited):
        retry = str(max(1, round(exc.retry_after + 0.5)))
        return _error(429, "RateLimitExceeded", message, {"Retry-After": retry})
    if isinstance(exc, DirectoryUnavailable):
        return _error(502, "UpstreamFailure", message)
    if isinstance(exc, Unsupported):
        return _error(400, "InvalidRequest", message)
    if isinstance(exc, LimitExceeded):
        return _error(400, "LimitExceeded", message)
    if isinstance(exc, Corrupt):
        return _error(500, "InternalServerError", "stored keys are damaged; tell the operator")
    raise exc


def _private_response(body: dict[str, Any]) -> Response:
    # Private keys must not be kept by any cache between us and the owner.
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


class Handlers:
    """One instance per app; `keyring` and `verifier` are set at start-up."""

    def __init__(self, metrics: Metrics, client_ip_header: str, cache: AnswerCache) -> None:
        self.metrics = metrics
        self.cache = cache
        self.client_ip_header = client_ip_header.lower()
        self.keyring: Keyring | None = None
        self.verifier: ServiceAuthVerifier | None = None

    def _ready(self) -> tuple[Keyring, ServiceAuthVerifier]:
        if self.keyring is None or self.verifier is None:
            raise XrpcError(503, "NotReady", "keyserver is starting")
        return self.keyring, self.verifier

    def _client(self, request: Request) -> str:
        if self.client_ip_header:
            forwarded = request.headers.get(self.client_ip_header, "")
            # The last hop is the one our trusted proxy appended.
            last = forwarded.rsplit(",", 1)[-1].strip()
            if last:
                return last[:64]
        return request.client.host if request.client else "unknown"

    async def _owner(self, request: Request, lxm: str) -> Did:
        _keyring, verifier = self._ready()
        try:
            token = await check_auth(request, verifier, lxm, client=self._client(request))
        except XrpcError as e:
            cause = e.__cause__
            self.metrics.auth_failures.labels(
                cause.reason if isinstance(cause, AuthError) else "other"
            ).inc()
            raise
        asked = request.query_params.get("did")
        if asked is not None and asked != token.iss:
            # Refused before the commit: the token stays good for a right request.
            raise XrpcError(403, "Forbidden", "a token can only fetch its own issuer's keys")
        commit_auth(verifier, token)  # no await since the check: cannot fail
        return token.iss

    def route(self, method: str, handler: Handler) -> Handler:
        """Wrap `handler` with the refusal mapping and the request counter."""

        async def endpoint(request: Request) -> Response:
            try:
                response = await handler(request)
            except BadRequest as e:
                response = _error(400, "InvalidRequest", str(e))
            except KeyringError as e:
                response = _refusal(e)
            except XrpcError as e:
                response = _error(e.status, e.error, e.message, e.headers)
            self.metrics.requests.labels(method, str(response.status_code)).inc()
            return response

        return endpoint

    async def public(self, request: Request) -> Response:
        return await self._public(request, "hearth", messages.render_public)

    async def roomy_public(self, request: Request) -> Response:
        return await self._public(request, "roomy", messages.render_roomy_public)

    async def _public(
        self, request: Request, kind: str, render: Callable[[PublicView], dict[str, Any]]
    ) -> Response:
        keyring, _ = self._ready()
        did = messages.parse_did_param(request.query_params.get("did"))
        body = self.cache.get(kind, did)
        if body is None:
            epoch = self.cache.epoch()
            view = await keyring.public(did, self._client(request))
            body = messages.json_bytes(render(view))
            self.cache.put(kind, did, body, epoch)
        return Response(body, media_type="application/json")

    async def private(self, request: Request) -> Response:
        keyring, _ = self._ready()
        view = await keyring.private(await self._owner(request, PRIVATE))
        self.metrics.private_served.inc()
        return _private_response(messages.render_private(view))

    async def roomy_private(self, request: Request) -> Response:
        keyring, _ = self._ready()
        view = await keyring.private(await self._owner(request, ROOMY_PRIVATE))
        self.metrics.private_served.inc()
        return _private_response(messages.render_roomy_private(view))

    async def rotate(self, request: Request) -> Response:
        keyring, _ = self._ready()
        view = await keyring.rotate(await self._owner(request, ROTATE))
        self.metrics.private_served.inc()
        return _private_response(messages.render_private(view))

    async def register(self, request: Request) -> Response:
        keyring, _ = self._ready()
        owner = await self._owner(request, REGISTER)
        body = messages.RegisterRequest.parse(await _read_body(request))
        view = await keyring.register(owner, body.keys)
        return JSONResponse(messages.render_public(view))


async def _read_body(request: Request) -> bytes:
    # Capped while read: a larger declared or streamed body is 413 at once.
    return await read_body(request, messages.MAX_BODY_BYTES)
