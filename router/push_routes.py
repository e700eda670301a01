"""XRPC endpoints for Web Push registration (JSON; all but the VAPID key need auth).

- `POST /xrpc/chat.hearth.v1.push.register` `{"subscription", "level"?, "device"?}`
  -> `{"device", "level"}`. Without `device` the id is derived from the
  endpoint; present the returned id on router connections (`["device", id]`).
- `POST …push.unregister` `{"device"}` or `{"endpoint"}` -> `{"removed": n}`
- `POST …push.setLevel` `{"level", "device"?}` (no device: all the DID's) -> `{"updated": n}`
- `POST …push.subscribeDocument` `{"device", "docId", "level"}` -> `{}`
- `POST …push.unsubscribeDocument` `{"device", "docId"}` -> `{"removed": bool}`
- `GET …push.vapidPublicKey` -> `{"publicKey"}` (base64url, the `applicationServerKey`)

Auth is a service-auth JWT whose `lxm` names the method, as for every
Hearth XRPC call; the DID it proves is the DID registered.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hearth.auth import ServiceAuthVerifier
from hearth.http import XrpcError, read_json_body, require_auth
from hearth.types import Did, DocumentId
from router.messages import MessageError
from router.notify import Notifications
from router.notify_messages import device_id
from router.push import PushSubscription, SubscriptionError, b64url
from router.push_store import RegistryFull
from router.urgency import DEFAULT_LEVEL, Level

NSID = "chat.hearth.v1.push."
MAX_BODY = 16 * 1024

# Gives the routes what the app's lifespan created (None before start-up).
Context = Callable[[], tuple[Notifications, ServiceAuthVerifier] | None]


def default_device(endpoint: str) -> str:
    return "ep-" + b64url(hashlib.sha256(endpoint.encode()).digest())[:22]


def _level(value: Any, default: Level | None = None) -> Level:
    if value is None and default is not None:
        return default
    try:
        return Level(value)
    except ValueError:
        raise XrpcError(
            400, "InvalidRequest", "level must be silent, quiet, engaged or busy"
        ) from None


def _device(value: Any) -> str:
    try:
        return device_id(value)
    except MessageError as e:
        raise XrpcError(400, "InvalidRequest", e.message) from None


def _doc(value: Any) -> DocumentId:
    if not isinstance(value, str) or not value or len(value) > 2048:
        raise XrpcError(400, "InvalidRequest", "docId must be a non-empty string")
    return DocumentId(value)


def push_routes(context: Context) -> list[Route]:
    """The push XRPC routes; `context()` returns the running Notifications and verifier."""

    def authed(
        method: str,
        handler: Callable[[Notifications, Did, dict[str, Any]], Awaitable[dict[str, Any]]],
    ) -> Route:
        nsid = NSID + method

        async def endpoint(request: Request) -> Response:
            ctx = context()
            if ctx is None:
                raise XrpcError(503, "Unavailable", "router is starting")
            notifications, verifier = ctx
            verified = await require_auth(request, verifier, nsid)
            # Authenticated first: an anonymous body is never read.
            body = await read_json_body(request, MAX_BODY)
            result = await handler(notifications, verified.iss, body)
            return JSONResponse(result, headers={"Cache-Control": "no-store"})

        return Route(f"/xrpc/{nsid}", endpoint, methods=["POST"])

    async def register(n: Notifications, did: Did, body: dict[str, Any]) -> dict[str, Any]:
        try:
            sub = PushSubscription.from_json(
                body.get("subscription"),
                allow_insecure=n.settings.push_allow_http,
                allow_private=n.settings.allow_private_hosts,
            )
        except SubscriptionError as e:
            raise XrpcError(400, "InvalidSubscription", str(e)) from None
        level = _level(body.get("level"), DEFAULT_LEVEL)
        device = (
            _device(body["device"])
            if body.get("device") is not None
            else default_device(sub.endpoint)
        )
        try:
            await n.registry.register(did, device, sub, level)
        except RegistryFull as e:
            raise XrpcError(429, "TooManyDevices", str(e)) from None
        await n.mailbox.add_device(did, device)
        return {"device": device, "level": level.value}

    async def unregister(n: Notifications, did: Did, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("device") is not None:
            removed = int(await n.registry.unregister(did, _device(body["device"])))
        elif isinstance(body.get("endpoint"), str):
            removed = 0
            for reg in await n.registry.registrations(did):
                if reg.subscription.endpoint == body["endpoint"]:
                    removed += int(await n.registry.unregister(did, reg.device))
        else:
            raise XrpcError(400, "InvalidRequest", "give device or endpoint")
        return {"removed": removed}

    async def set_level(n: Notifications, did: Did, body: dict[str, Any]) -> dict[str, Any]:
        level = _level(body.get("level"))
        device = _device(body["device"]) if body.get("device") is not None else None
        updated = await n.registry.set_level(did, device, level)
        if device is not None and updated == 0:
            raise XrpcError(404, "NotFound", "no such device registered for this DID")
        return {"updated": updated}

    async def subscribe(n: Notifications, did: Did, body: dict[str, Any]) -> dict[str, Any]:
        device = _device(body.get("device"))
        doc = _doc(body.get("docId"))
        level = _level(body.get("level"), DEFAULT_LEVEL)
        try:
            await n.registry.subscribe_doc(did, device, doc, level)
        except KeyError:
            raise XrpcError(404, "NotFound", "register this device for push first") from None
        except RegistryFull as e:
            raise XrpcError(429, "TooManySubscriptions", str(e)) from None
        return {}

    async def unsubscribe(n: Notifications, did: Did, body: dict[str, Any]) -> dict[str, Any]:
        device = _device(body.get("device"))
        doc = _doc(body.get("docId"))
        return {"removed": await n.registry.unsubscribe_doc(did, device, doc)}

    async def vapid_public_key(_request: Request) -> Response:
        ctx = context()
        if ctx is None:
            raise XrpcError(503, "Unavailable", "router is starting")
        return JSONResponse({"publicKey": ctx[0].vapid.public_key})

    return [
        authed("register", register),
        authed("unregister", unregister),
        authed("setLevel", set_level),
        authed("subscribeDocument", subscribe),
        authed("unsubscribeDocument", unsubscribe),
        Route(f"/xrpc/{NSID}vapidPublicKey", vapid_public_key, methods=["GET"]),
    ]
