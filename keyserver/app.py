"""The keyserver service: wiring of settings, master key, storage, resolver and routes.

See docs/keyserver.md for the API, the storage and the threat model.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from hearth.auth import AUTH_OPTIONS, AuthBudget, ServiceAuthVerifier, auth_limits_from_config
from hearth.config import ConfigError, Option, ServiceConfig, positive_int
from hearth.http import EXCEPTION_HANDLERS, AccessLogMiddleware, common_routes
from hearth.identity import web_did_for_url
from hearth.ratelimit import RateLimiter
from hearth.service import Service
from hearth.storage import StorageUnavailable, storage_status
from keyserver import handlers as h
from keyserver.cache import AnswerCache
from keyserver.directory import ResolverDirectory
from keyserver.keyring import Keyring
from keyserver.sealing import (
    MasterKeyError,
    Sealer,
    load_or_create_master_key,
    parse_master_key,
)
from keyserver.storage.sqlite import SqliteKeyStore
from resolver import Resolver

log = logging.getLogger("hearth.keyserver")

DID_SERVICES = (
    ("hearth_keyserver", "HearthKeyserver"),
    ("roomy_keyserver", "RoomyKeyserver"),
)


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("must be greater than 0")
    return value


OPTIONS = (
    Option(
        "master_key",
        str,
        "",
        "master key as 64 hex characters; overrides --master-key-file",
        secret=True,
    ),
    Option(
        "master_key_file",
        str,
        "",
        "master key file, created with mode 0600 if absent (default <data-dir>/keyserver/"
        "master.key)",
    ),
    Option("database", str, "", "SQLite file (default <data-dir>/keyserver/keys.sqlite3)"),
    Option(
        "storage_busy_timeout",
        _positive_float,
        30.0,
        "seconds a write waits for a lock held by another process before failing (503)",
    ),
    Option("create_burst", positive_int, 30, "new identities per client address, burst"),
    Option(
        "create_per_minute", _positive_float, 30.0, "new identities per client address a minute"
    ),
    Option("owner_burst", positive_int, 10, "rotations/registrations per DID, burst"),
    Option("owner_per_minute", _positive_float, 2.0, "rotations/registrations per DID a minute"),
    Option("max_generations", positive_int, 64, "key generations kept per DID"),
    Option("public_cache_entries", int, 50_000, "public-key answers kept in memory (0: no cache)"),
    Option(
        "client_ip_header",
        str,
        "",
        "header a trusted reverse proxy sets to the client address (e.g. x-forwarded-for)",
    ),
    *AUTH_OPTIONS,
)


def _master_key(config: ServiceConfig) -> tuple[bytes, str]:
    """The master key and where it came from (for the start-up log line)."""
    try:
        text = config.get_str("master_key")
        if text:
            return parse_master_key(text), "HEARTH_KEYSERVER_MASTER_KEY"
        path_text = config.get_str("master_key_file")
        path = Path(path_text) if path_text else config.service_dir / "master.key"
        return load_or_create_master_key(path), str(path)
    except MasterKeyError as e:
        raise ConfigError(f"keyserver master key: {e}") from e


def create_app(config: ServiceConfig) -> Starlette:
    """The keyserver ASGI app. Reads (or creates) the master key now; opens the
    database and the resolver when the server starts, closes them when it stops."""
    settings = config.settings
    master, source = _master_key(config)
    sealer = Sealer(master)
    db_text = config.get_str("database")
    db_path = Path(db_text) if db_text else config.service_dir / "keys.sqlite3"
    did = web_did_for_url(settings.url)
    registry = CollectorRegistry()
    metrics = h.Metrics(registry)
    cache = AnswerCache(config.get_int("public_cache_entries"))
    handlers = h.Handlers(metrics, config.get_str("client_ip_header"), cache)

    stores: dict[str, SqliteKeyStore] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        store = await SqliteKeyStore.open(
            db_path, busy_timeout=config.get_float("storage_busy_timeout")
        )
        stores["keys"] = store
        resolver: Resolver | None = None
        try:
            try:
                await store.bind_master_key(sealer.fingerprint)
            except StorageUnavailable as e:
                if store.health.broken is None:
                    raise  # e.g. locked: never serve without checking the master key
                # Corrupt: served broken, health and every request say why (503).
                log.error("%s cannot be used: %s", db_path, e)
            except Exception:
                log.error("%s was sealed under another master key; refusing to start", db_path)
                raise
            # The fingerprint is a keyed hash: it tells operators which key is in use.
            log.info(
                "keys in %s, master key from %s (fingerprint %s)",
                db_path,
                source,
                sealer.fingerprint[:16],
            )
            resolver = Resolver.from_settings(settings)
            # Tokens name the service DID, bare or (as PDSes proxying with
            # `atproto-proxy: <did>#<service id>` now may) with a service id.
            audiences = [did, *(f"{did}#{fragment}" for fragment, _kind in DID_SERVICES)]
            handlers.verifier = ServiceAuthVerifier(
                audiences, resolver.signing_key, budget=AuthBudget(auth_limits_from_config(config))
            )
            handlers.keyring = Keyring(
                store,
                sealer,
                ResolverDirectory(resolver),
                create_limiter=RateLimiter(
                    config.get_int("create_burst"), config.get_float("create_per_minute")
                ),
                owner_limiter=RateLimiter(
                    config.get_int("owner_burst"), config.get_float("owner_per_minute")
                ),
                max_generations=config.get_int("max_generations"),
                on_created=lambda how: metrics.created.labels(how).inc(),
                on_changed=cache.invalidate,
            )
            yield
        finally:
            handlers.keyring = None
            handlers.verifier = None
            if resolver is not None:
                await resolver.aclose()
            stores.pop("keys", None)
            await store.close()

    async def health() -> dict[str, Any]:
        keyring = handlers.keyring
        store = stores.get("keys")
        if keyring is None or store is None:
            return {"ready": False}
        try:
            await keyring.ping()
        except StorageUnavailable:
            pass  # the store's health says why
        except Exception:  # noqa: BLE001 - health reports, it does not raise
            log.exception("key store does not answer")
            return {"ready": True, "storage": "error: key store does not answer"}
        return {"ready": True, "storage": storage_status([store.health])}

    routes = [
        Route(f"/xrpc/{h.PUBLIC}", handlers.route(h.PUBLIC, handlers.public)),
        Route(f"/xrpc/{h.PRIVATE}", handlers.route(h.PRIVATE, handlers.private)),
        Route(
            f"/xrpc/{h.REGISTER}",
            handlers.route(h.REGISTER, handlers.register),
            methods=["POST"],
        ),
        Route(f"/xrpc/{h.ROTATE}", handlers.route(h.ROTATE, handlers.rotate), methods=["POST"]),
        Route(f"/xrpc/{h.ROOMY_PUBLIC}", handlers.route(h.ROOMY_PUBLIC, handlers.roomy_public)),
        Route(f"/xrpc/{h.ROOMY_PRIVATE}", handlers.route(h.ROOMY_PRIVATE, handlers.roomy_private)),
        *common_routes(did, settings.url, DID_SERVICES, registry, health),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[Middleware(AccessLogMiddleware, service="keyserver")],
    )


SERVICE = Service(
    name="keyserver",
    default_port=8702,
    summary="per-DID signing and encryption keys: public lookup, owner-only private keys",
    create_app=create_app,
    options=OPTIONS,
)
