"""Serves the built PWA (frontend/dist) with SPA fallback, and `/config.json`
telling the app where the services are."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

PLACEHOLDER = """<!doctype html><meta charset="utf-8"><title>Hearth</title>
<h1>Hearth</h1><p>The frontend is not built yet (run <code>make up</code>, or it is
not implemented yet). The services are:</p><ul>{items}</ul>"""


def default_dist() -> Path:
    env = os.environ.get("HEARTH_FRONTEND_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "frontend" / "dist"


def create_frontend_app(service_urls: Mapping[str, str], dist: Path | None = None) -> Starlette:
    root = (dist or default_dist()).resolve()

    async def config(_request: Request) -> Response:
        return JSONResponse({"services": dict(service_urls)})

    async def static(request: Request) -> Response:
        rel = request.path_params.get("path", "")
        index = root / "index.html"
        if not index.is_file():
            items = "".join(f"<li>{k}: <a href='{v}'>{v}</a></li>" for k, v in service_urls.items())
            return HTMLResponse(PLACEHOLDER.format(items=items))
        candidate = (root / rel).resolve()
        if candidate.is_file() and candidate.is_relative_to(root):
            return FileResponse(candidate)
        return FileResponse(index)  # SPA fallback: client-side routes

    return Starlette(
        routes=[Route("/config.json", config), Route("/{path:path}", static)],
    )
