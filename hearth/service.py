"""What a service declares so `hearth up` and `hearth <service>` can run it.

Services are found through the `hearth.services` entry-point group, so this
package never imports a service statically.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from hearth.config import Option, ServiceConfig

ASGIApp = Any  # starlette/uvicorn ASGI callable


@dataclass(frozen=True)
class Service:
    name: str
    default_port: int
    summary: str
    create_app: Callable[[ServiceConfig], ASGIApp]
    options: tuple[Option, ...] = ()
    # Extra uvicorn.Config keyword arguments (e.g. WebSocket limits), computed from config.
    uvicorn_options: Callable[[ServiceConfig], Mapping[str, Any]] = field(
        default=lambda _config: {}
    )


SERVICE_ORDER = ("resolver", "keyserver", "router", "syncserver")


def load_services() -> dict[str, Service]:
    """All installed services, in start-up order."""
    found: dict[str, Service] = {}
    for ep in entry_points(group="hearth.services"):
        svc = ep.load()
        if not isinstance(svc, Service):
            raise TypeError(f"entry point {ep.name} is not a hearth.service.Service")
        found[ep.name] = svc
    order = {name: i for i, name in enumerate(SERVICE_ORDER)}
    return dict(sorted(found.items(), key=lambda kv: order.get(kv[0], len(order))))
