"""Hearth resolver: atproto handle and DID resolution, as a library and a service."""

from resolver.errors import InvalidInput, NotFound, ResolveError, UpstreamError
from resolver.resolver import Identity, Resolver

__all__ = ["Identity", "InvalidInput", "NotFound", "ResolveError", "Resolver", "UpstreamError"]
