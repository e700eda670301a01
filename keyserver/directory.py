"""Answers "does this DID exist?" with the shared resolver library."""

from __future__ import annotations

from hearth.types import Did
from keyserver.keyring import DirectoryUnavailable
from resolver import NotFound, ResolveError, Resolver


class ResolverDirectory:
    """A `keyring.DidDirectory` over `resolver.Resolver` (and its cache)."""

    def __init__(self, resolver: Resolver) -> None:
        self._resolver = resolver

    async def has_document(self, did: Did) -> bool:
        try:
            await self._resolver.resolve_did(did)
        except NotFound:
            return False
        except ResolveError as e:
            raise DirectoryUnavailable(f"cannot resolve {did}: {e.message}") from e
        return True
