"""The resolver library: handle -> DID, DID -> document, two-way identity checks.

Other services use it in-process:

    r = Resolver.from_settings(settings)
    did = await r.resolve_handle("alice.example.com")
    doc = await r.resolve_did(did)
    key = await r.signing_key(did, fresh=False)   # a hearth.auth.KeyLookup
    await r.aclose()

Every method raises only `ResolveError` subclasses (InvalidInput 400,
NotFound 404, UpstreamError 502).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from hearth.auth import AuthError, atproto_key_from_document
from hearth.config import Settings
from hearth.identity import (
    INVALID_HANDLE,
    IdentitySyntaxError,
    is_resolvable_handle,
    normalize_handle,
    parse_did,
    web_did_host,
)
from hearth.keys import KeyFormatError, PublicKey
from hearth.types import Did, Handle
from resolver.cache import Lifetimes, SwrCache
from resolver.errors import InvalidInput, NotFound, ResolveError, UpstreamError
from resolver.policy import Outcome, combine, did_from_txt, did_from_well_known
from resolver.upstream import MAX_WELL_KNOWN_BYTES, Upstream

log = logging.getLogger("resolver")


@dataclass(frozen=True, slots=True)
class Identity:
    did: Did
    handle: Handle  # INVALID_HANDLE when the two-way check fails
    did_doc: dict[str, Any]


def _is_negative(e: Exception) -> bool:
    return isinstance(e, NotFound | InvalidInput)


class Resolver:
    def __init__(
        self,
        upstream: Upstream,
        *,
        plc_url: str = "https://plc.directory",
        max_entries: int = 100_000,
        lifetimes: Lifetimes | None = None,
    ) -> None:
        lifetimes = lifetimes or Lifetimes()
        self.upstream = upstream
        self.plc_url = plc_url.rstrip("/")
        self.timeout = upstream.timeout
        self.handles: SwrCache[Did] = SwrCache(
            self._fetch_handle,
            max_entries=max_entries,
            lifetimes=lifetimes,
            is_negative=_is_negative,
        )
        self.documents: SwrCache[dict[str, Any]] = SwrCache(
            self._fetch_document,
            max_entries=max_entries,
            lifetimes=lifetimes,
            is_negative=_is_negative,
        )

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> Resolver:
        """A resolver with the identity settings (nameservers, PLC URL, HTTP host map).

        Warns when HEARTH_HTTP_HOSTS is set, so every service that resolves says
        at start-up that some lookups go to local addresses over plain http.
        """
        if settings.http_hosts:
            log.warning(
                "HEARTH_HTTP_HOSTS maps %s to local addresses over plain http "
                "(tests/air-gapped use)",
                ", ".join(sorted(settings.http_hosts)),
            )
        upstream = Upstream(
            nameservers=settings.dns_nameservers,
            http_hosts=settings.http_hosts,
            timeout=settings.resolver_timeout,
            allow_private=settings.allow_private_hosts,
        )
        return cls(upstream, plc_url=settings.plc_url, **kwargs)

    async def aclose(self) -> None:
        await self.handles.aclose()
        await self.documents.aclose()
        await self.upstream.aclose()

    # -- handle -> DID -------------------------------------------------------

    async def resolve_handle(self, handle: str) -> Did:
        try:
            normalized = normalize_handle(handle)
        except IdentitySyntaxError as e:
            raise InvalidInput(str(e)) from e
        if not is_resolvable_handle(normalized):
            raise NotFound("handle is in a TLD that is never resolved", "HandleNotFound")
        return await self.handles.get(normalized)

    async def _fetch_handle(self, handle: str) -> Did:
        async def with_timeout(coro: Any) -> Outcome:
            try:
                result: Did | None = await asyncio.wait_for(coro, self.timeout)
                return result
            except TimeoutError:
                return UpstreamError("lookup timed out")
            except ResolveError as e:
                return e

        dns_outcome, https_outcome = await asyncio.gather(
            with_timeout(self._handle_dns(handle)), with_timeout(self._handle_https(handle))
        )
        return combine(dns_outcome, https_outcome)

    async def _handle_dns(self, handle: str) -> Did | None:
        return did_from_txt(await self.upstream.txt(f"_atproto.{handle}"))

    async def _handle_https(self, handle: str) -> Did | None:
        status, body = await self.upstream.fetch(
            handle, "/.well-known/atproto-did", MAX_WELL_KNOWN_BYTES
        )
        if status in (404, 410):
            return None  # nothing published there: a definitive "no"
        if status != 200:
            # 5xx, 429, a redirect ...: the host failed, it did not say "no".
            raise UpstreamError(f"{handle} answered HTTP {status} for /.well-known/atproto-did")
        try:
            return did_from_well_known(body.decode("utf-8"))
        except UnicodeDecodeError:
            return None

    # -- DID -> document -----------------------------------------------------

    async def resolve_did(self, did: str, *, fresh: bool = False) -> dict[str, Any]:
        """The DID document; `fresh=True` skips the cache (e.g. after a bad signature)."""
        try:
            parsed = parse_did(did)
        except IdentitySyntaxError as e:
            raise InvalidInput(str(e)) from e
        if parsed.startswith("did:key:"):
            return did_key_document(parsed)
        if not parsed.startswith(("did:plc:", "did:web:")):
            raise InvalidInput("only did:plc, did:web and did:key are supported")
        return await self.documents.get(parsed, fresh=fresh)

    async def _fetch_document(self, did: str) -> dict[str, Any]:
        async def fetch() -> dict[str, Any]:
            if did.startswith("did:plc:"):
                return await self.upstream.fetch_json(
                    f"{self.plc_url}/{did}", {}, "PLC directory", trusted=True
                )
            web = web_did_host(did)
            return await self.upstream.fetch_host_json(
                web.host, web.document_url_path, f"did:web host {web.host}"
            )

        try:
            doc = await asyncio.wait_for(fetch(), self.timeout)
        except TimeoutError as e:
            raise UpstreamError("DID document lookup timed out") from e
        except NotFound as e:
            raise NotFound(e.message, "DidNotFound") from e
        if doc.get("id") != did:
            raise UpstreamError("DID document id does not match the DID")
        return doc

    async def signing_key(self, did: Did, fresh: bool) -> PublicKey | None:
        """The `#atproto` key of `did` (a `hearth.auth.KeyLookup`)."""
        if did.startswith("did:key:"):
            try:
                return PublicKey.from_did_key(did)
            except KeyFormatError:
                return None
        try:
            doc = await self.resolve_did(did, fresh=fresh)
        except NotFound:
            return None
        except ResolveError as e:
            raise AuthError("unresolvable", f"cannot resolve issuer DID: {e.message}") from e
        return atproto_key_from_document(doc, did)

    # -- both ways -----------------------------------------------------------

    async def resolve_identity(self, identifier: str) -> Identity:
        """A DID or handle, with the two-way handle check."""
        if identifier.startswith("did:"):
            did = Did(identifier)
            doc = await self.resolve_did(did)
            claimed = first_handle(doc)
            handle = INVALID_HANDLE
            if claimed is not None:
                try:
                    if await self.resolve_handle(claimed) == did:
                        handle = normalize_handle(claimed)
                except ResolveError:
                    pass
            return Identity(Did(doc["id"]), handle, doc)
        did = await self.resolve_handle(identifier)
        normalized = normalize_handle(identifier)
        doc = await self.resolve_did(did)
        claimed = first_handle(doc)
        ok = claimed is not None and claimed.lower() == normalized
        return Identity(did, normalized if ok else INVALID_HANDLE, doc)


def first_handle(doc: dict[str, Any]) -> str | None:
    """The handle in the first `at://` entry of alsoKnownAs, if any."""
    aka = doc.get("alsoKnownAs")
    if not isinstance(aka, list):
        return None
    for entry in aka:
        if isinstance(entry, str) and entry.startswith("at://"):
            return entry[len("at://") :]
    return None


def did_key_document(did: Did) -> dict[str, Any]:
    """did:key documents are derived from the key itself; no lookup."""
    try:
        key = PublicKey.from_did_key(did)
    except KeyFormatError as e:
        raise InvalidInput(f"invalid did:key: {e}") from e
    vm = {
        "id": f"{did}#{key.multibase}",
        "type": "Multikey",
        "controller": did,
        "publicKeyMultibase": key.multibase,
    }
    return {
        "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"],
        "id": did,
        "verificationMethod": [vm],
        "authentication": [vm["id"]],
        "assertionMethod": [vm["id"]],
    }
