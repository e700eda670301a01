"""Serves the built PWA (frontend/dist) with SPA fallback, `/config.json`
telling the app where the services are, and a same-origin HTTP pass-through
to them under `/svc/<service>/...`.

The pass-through exists because the PWA's origin differs from each service's
(each has its own port), and the services answer XRPC without CORS headers:
the browser calls them through its own origin instead. WebSockets (router,
syncserver) are not subject to CORS and go to the services directly.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

PLACEHOLDER = """<!doctype html><meta charset="utf-8"><title>Hearth</title>
<h1>Hearth</h1><p>The frontend is not built yet (run <code>make up</code>, or it is
not implemented yet). The services are:</p><ul>{items}</ul>"""

# Request headers passed on to a service, and response headers passed back.
FORWARD_REQUEST_HEADERS = ("authorization", "content-type", "accept", "atproto-proxy")
FORWARD_RESPONSE_HEADERS = ("content-type", "cache-control", "www-authenticate")
MAX_PROXY_BODY = 1 << 20
PROXY_TIMEOUT = 15.0


def default_dist() -> Path:
    env = os.environ.get("HEARTH_FRONTEND_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "frontend" / "dist"


def create_frontend_app(service_urls: Mapping[str, str], dist: Path | None = None) -> Starlette:
    root = (dist or default_dist()).resolve()
    targets = {name: url.rstrip("/") for name, url in service_urls.items()}
    client = httpx.AsyncClient(timeout=PROXY_TIMEOUT, follow_redirects=False, trust_env=False)

    async def config(_request: Request) -> Response:
        return JSONResponse(
            {
                "services": dict(service_urls),
                "http": {name: f"/svc/{name}" for name in targets},
            },
            headers={"Cache-Control": "no-store"},
        )

    async def proxy(request: Request) -> Response:
        base = targets.get(request.path_params["service"])
        if base is None:
            return JSONResponse({"error": "NotFound", "message": "no such service"}, 404)
        body = await request.body()
        if len(body) > MAX_PROXY_BODY:
            return JSONResponse({"error": "PayloadTooLarge", "message": "body too large"}, 413)
        url = f"{base}/{request.path_params['path']}"
        if request.url.query:
            url += "?" + request.url.query
        headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARD_REQUEST_HEADERS}
        try:
            upstream = await client.request(request.method, url, headers=headers, content=body)
        except httpx.HTTPError as e:
            return JSONResponse(
                {"error": "UpstreamFailed", "message": f"{type(e).__name__}"}, status_code=502
            )
        out = {k: v for k, v in upstream.headers.items() if k.lower() in FORWARD_RESPONSE_HEADERS}
        return Response(upstream.content, status_code=upstream.status_code, headers=out)

    async def static(request: Request) -> Response:
        rel = request.path_params.get("path", "")
        index = root / "index.html"
        if not index.is_file():
            items = "".join(f"<li>{k}: <a href='{v}'>{v}</a></li>" for k, v in service_urls.items())
            return HTMLResponse(PLACEHOLDER.format(items=items))
        candidate = (root / rel).resolve()
        if candidate.is_file() and candidate.is_relative_to(root):
            # The service worker must always be revalidated, or updates never reach users.
            headers = {"Cache-Control": "no-cache"} if rel in ("sw.js", "index.html") else None
            return FileResponse(candidate, headers=headers)
        return FileResponse(index, headers={"Cache-Control": "no-cache"})  # SPA fallback

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    return Starlette(
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
    )
