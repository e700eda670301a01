"""Serves the built PWA (frontend/dist) with SPA fallback, `/config.json`
telling the app where the services are, and a same-origin HTTP pass-through
to them under `/svc/<service>/...`.

The pass-through exists because the PWA's origin differs from each service's
(each has its own port), and the services answer XRPC without CORS headers:
the browser calls them through its own origin instead. WebSockets (router,
syncserver) are not subject to CORS and go to the services directly.

Costs: a proxied request holds at most `max_body` bytes of request body (1 MiB
by default, `HEARTH_FRONTEND_MAX_BODY`; a larger declared or streamed body is
413 as soon as it passes the limit) and at most `max_answer` bytes of the
service's answer (8 MiB, `HEARTH_FRONTEND_MAX_ANSWER`; a larger one is 502 as
soon as it passes the limit). Answers are read whole so that a client reading
slowly never holds a pooled connection. At most `PROXY_CONNECTIONS`
connections are open to the services at once, all from this process's
address, so they stay well under a service's per-address cap. The path and
query go through unchanged and are never logged (they carry tokens and
document ids); paths with control characters are 400.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    Response,
)
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from hearth.http import EXCEPTION_HANDLERS, read_body, xrpc_error

PLACEHOLDER = """<!doctype html><meta charset="utf-8"><title>Hearth</title>
<h1>Hearth</h1><p>The frontend is not built yet (run <code>make up</code>, or it is
not implemented yet). The services are:</p><ul>{items}</ul>"""

# Request headers passed on to a service, and response headers passed back.
FORWARD_REQUEST_HEADERS = ("authorization", "content-type", "accept", "atproto-proxy")
FORWARD_RESPONSE_HEADERS = ("content-type", "cache-control", "www-authenticate")
MAX_PROXY_BODY = 1 << 20
MAX_PROXY_ANSWER = 8 << 20
PROXY_TIMEOUT = 15.0
PROXY_CONNECTIONS = 32
# C0 controls and DEL, raw or percent-decoded: no file or service path has one,
# and a NUL makes file-system calls raise.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


async def _read_answer(upstream: httpx.Response, limit: int) -> bytes | None:
    """The whole answer, or None as soon as it passes `limit` bytes."""
    answer = bytearray()
    async for chunk in upstream.aiter_bytes():
        answer += chunk
        if len(answer) > limit:
            return None
    return bytes(answer)


def default_dist() -> Path:
    env = os.environ.get("HEARTH_FRONTEND_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "frontend" / "dist"


def _size_from_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = int(raw)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {raw!r}")
    return value


def max_proxy_body() -> int:
    """`HEARTH_FRONTEND_MAX_BODY`, else `MAX_PROXY_BODY`; ValueError if not a size."""
    return _size_from_env("HEARTH_FRONTEND_MAX_BODY", MAX_PROXY_BODY)


def max_proxy_answer() -> int:
    """`HEARTH_FRONTEND_MAX_ANSWER`, else `MAX_PROXY_ANSWER`; ValueError if not a size."""
    return _size_from_env("HEARTH_FRONTEND_MAX_ANSWER", MAX_PROXY_ANSWER)


def _upstream_failed(why: str) -> Response:
    return JSONResponse({"error": "UpstreamFailed", "message": why}, status_code=502)


class RefuseControlCharacters:
    """400 for a request whose decoded path holds a control character (`/%00`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _CONTROL.search(scope["path"]):
            response = xrpc_error(400, "InvalidRequest", "control character in the path")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_frontend_app(
    service_urls: Mapping[str, str],
    dist: Path | None = None,
    *,
    max_body: int = MAX_PROXY_BODY,
    max_answer: int = MAX_PROXY_ANSWER,
) -> Starlette:
    root = (dist or default_dist()).resolve()
    targets = {name: url.rstrip("/") for name, url in service_urls.items()}
    client = httpx.AsyncClient(
        timeout=PROXY_TIMEOUT,
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(
            max_connections=PROXY_CONNECTIONS, max_keepalive_connections=PROXY_CONNECTIONS // 4
        ),
    )

    async def config(_request: Request) -> Response:
        return JSONResponse(
            {
                "services": dict(service_urls),
                "http": {name: f"/svc/{name}" for name in targets},
            },
            headers={"Cache-Control": "no-store"},
        )

    async def proxy(request: Request) -> Response:
        service = request.path_params["service"]
        base = targets.get(service)
        if base is None:
            return JSONResponse({"error": "NotFound", "message": "no such service"}, 404)
        body = await read_body(request, max_body)
        # The raw (still percent-encoded) path: decoding and re-encoding could
        # turn an encoded `?` or `/` into a different request.
        raw_path: bytes = request.scope.get("raw_path") or request.url.path.encode()
        rest = raw_path.decode("latin-1").split("/", 3)[3]  # after "/svc/<service>/"
        url = f"{base}/{rest}"
        if request.url.query:
            url += "?" + request.url.query
        headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARD_REQUEST_HEADERS}
        try:
            outgoing = client.build_request(request.method, url, headers=headers, content=body)
            upstream = await client.send(outgoing, stream=True)
        except (httpx.HTTPError, httpx.InvalidURL) as e:
            return _upstream_failed(type(e).__name__)
        # Read whole but capped, then the connection goes back to the pool at
        # once: streaming to a client that reads slowly would hold one of the
        # few pooled connections for as long as it likes.
        try:
            answer = await _read_answer(upstream, max_answer)
        except httpx.HTTPError as e:
            return _upstream_failed(type(e).__name__)
        finally:
            await upstream.aclose()
        if answer is None:
            return _upstream_failed(f"answer over {max_answer} bytes")
        out = {k: v for k, v in upstream.headers.items() if k.lower() in FORWARD_RESPONSE_HEADERS}
        return Response(answer, status_code=upstream.status_code, headers=out)

    async def static(request: Request) -> Response:
        rel = request.path_params.get("path", "")
        index = root / "index.html"
        if not index.is_file():
            items = "".join(f"<li>{k}: <a href='{v}'>{v}</a></li>" for k, v in service_urls.items())
            return HTMLResponse(PLACEHOLDER.format(items=items))
        try:
            candidate = (root / rel).resolve()
            found = candidate.is_file() and candidate.is_relative_to(root)
        except (OSError, ValueError):  # a name too long for the file system, ...
            found = False
        if found:
            # The service worker must always be revalidated, or updates never reach users.
            headers = {"Cache-Control": "no-cache"} if rel in ("sw.js", "index.html") else None
            return FileResponse(candidate, headers=headers)
        return FileResponse(index, headers={"Cache-Control": "no-cache"})  # SPA fallback

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    app = Starlette(
        routes=[
            Route("/config.json", config),
            Route(
                "/svc/{service}/{path:path}",
                proxy,
                methods=["GET", "POST", "PUT", "DELETE"],
            ),
            Route("/{path:path}", static),
        ],
        lifespan=lifespan,
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.add_middleware(RefuseControlCharacters)
    return app
