"""hearth/frontend.py: static PWA with SPA fallback, /config.json, the /svc pass-through."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from hearth.frontend import create_frontend_app
from tests.servers import bound_socket, serve_app
from tests.timing import MS


async def echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse(
        {
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query,
            "authorization": request.headers.get("authorization"),
            "cookie": request.headers.get("cookie"),
            "body": body.decode(),
        },
        status_code=201,
        headers={"X-Internal": "secret"},
    )


def dist(tmp_path: Path) -> Path:
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>Hearth</title>")
    (root / "sw.js").write_text("// worker")
    (root / "assets" / "app-1234.js").write_text("console.log(1)")
    (tmp_path / "secret.txt").write_text("outside dist")
    return root


async def test_static_files_fallback_and_config(tmp_path: Path) -> None:
    app = create_frontend_app({"router": "http://127.0.0.1:9"}, dist(tmp_path))
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
        config = (await client.get("/config.json")).json()
        assert config == {
            "services": {"router": "http://127.0.0.1:9"},
            "http": {"router": "/svc/router"},
        }
        asset = await client.get("/assets/app-1234.js")
        assert asset.text == "console.log(1)"
        sw = await client.get("/sw.js")
        assert sw.headers["cache-control"] == "no-cache"
        for route in ("/", "/join/abc", "/s/x/y"):
            r = await client.get(route)
            assert r.status_code == 200 and "<title>Hearth</title>" in r.text
        # Nothing outside dist is ever served.
        r = await client.get("/../secret.txt")
        assert "outside dist" not in r.text


async def test_pass_through_to_services(tmp_path: Path) -> None:
    upstream = Starlette(routes=[Route("/{path:path}", echo, methods=["GET", "POST"])])
    down = bound_socket()
    down_port = down.getsockname()[1]
    down.close()  # nothing listens there any more
    async with serve_app(upstream) as service:
        app = create_frontend_app(
            {"syncserver": service, "router": f"http://127.0.0.1:{down_port}"}, dist(tmp_path)
        )
        async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
            r = await client.post(
                "/svc/syncserver/xrpc/chat.hearth.v1.sync.setAccess?x=1&y=2",
                content=json.dumps({"documentId": "abc"}),
                headers={"Authorization": "Bearer t0k", "Cookie": "session=1"},
            )
            assert r.status_code == 201
            assert r.json() == {
                "method": "POST",
                "path": "/xrpc/chat.hearth.v1.sync.setAccess",
                "query": "x=1&y=2",
                "authorization": "Bearer t0k",
                "cookie": None,
                "body": '{"documentId": "abc"}',
            }
            assert "x-internal" not in r.headers
            assert (await client.get("/svc/nope/xrpc/x")).status_code == 404
            failed = await client.get("/svc/router/xrpc/_health")
            assert failed.status_code == 502
            assert failed.json()["error"] == "UpstreamFailed"


async def test_an_answer_over_the_cap_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    """An endless answer from a service ends in 502 once it passes the proxy's cap,
    and the proxy stays usable (its pooled connection was given back)."""
    sent = 0

    async def endless(_request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            nonlocal sent
            while True:
                sent += 65536
                yield b"x" * 65536
                # Once the proxy hangs up, uvicorn's send returns at once: without
                # this the generator would never let the loop run again.
                await asyncio.sleep(0)

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    async def small(_request: Request) -> Response:
        return JSONResponse({"ok": True})

    upstream = Starlette(routes=[Route("/xrpc/export", endless), Route("/xrpc/small", small)])
    async with serve_app(upstream) as service:
        app = create_frontend_app({"syncserver": service}, dist(tmp_path), max_answer=1 << 20)
        async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
            r = await asyncio.wait_for(client.get("/svc/syncserver/xrpc/export"), 10_000 * MS)
            assert r.status_code == 502 and r.json()["error"] == "UpstreamFailed"
            assert sent < 16 << 20
            for _ in range(40):  # more than the proxy's pool
                assert (await client.get("/svc/syncserver/xrpc/small")).json() == {"ok": True}
