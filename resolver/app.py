"""The resolver service: not implemented yet (see the issue tracker).

It answers every request with 501 so nothing pretends to work.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hearth.config import ServiceConfig
from hearth.service import Service


def create_app(config: ServiceConfig) -> Starlette:
    async def not_implemented(_request: Request) -> Response:
        return JSONResponse(
            {"error": "NotImplemented", "message": "resolver: not implemented yet"}, status_code=501
        )

    return Starlette(routes=[Route("/{path:path}", not_implemented)])


SERVICE = Service(
    name="resolver",
    default_port=8701,
    summary="resolver (not implemented yet)",
    create_app=create_app,
)
