"""Client side of the keyserver's public lookup: the keys to seal to and to verify with.

    keys = await fetch_public_keys(client, "https://keys.example", did)
    sealed = seal(..., recipient_key=keys.encryption)
    mail = contents.verify(keys.signing_keys)      # current and previous signing keys

Nothing is cached here; callers that look keys up often keep their own cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from hearth.keys import KeyFormatError, KeyType, PublicKey
from hearth.types import Did

PUBLIC_NSID = "chat.hearth.v1.key.public"


class KeyLookupError(Exception):
    """The keyserver did not answer with usable keys (`status` is its HTTP status, if any)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class PublishedKeys:
    did: Did
    signing: PublicKey  # Ed25519
    encryption: PublicKey  # X25519
    previous_signing: tuple[PublicKey, ...] = ()
    previous_encryption: tuple[PublicKey, ...] = ()

    @property
    def signing_keys(self) -> tuple[PublicKey, ...]:
        """Every signing key a signature may have been made with, newest first."""
        return (self.signing, *self.previous_signing)


def _key(value: Any, kind: KeyType, what: str) -> PublicKey:
    if not isinstance(value, str):
        raise KeyLookupError(f"{what} missing")
    try:
        key = (
            PublicKey.from_did_key(value)
            if value.startswith("did:")
            else (PublicKey.from_multibase(value))
        )
    except KeyFormatError as e:
        raise KeyLookupError(f"{what}: {e}") from e
    if key.type is not kind:
        raise KeyLookupError(f"{what} must be {kind.value}")
    return key


def parse_public_keys(body: Any, did: str) -> PublishedKeys:
    """Validate a `key.public` answer for `did`; raises KeyLookupError."""
    if not isinstance(body, dict) or body.get("did") != did:
        raise KeyLookupError("answer is not about the DID asked for")
    previous = body.get("previous", [])
    if not isinstance(previous, list) or not all(isinstance(p, dict) for p in previous):
        raise KeyLookupError("previous must be a list of objects")
    return PublishedKeys(
        Did(did),
        _key(body.get("signingKey"), KeyType.ED25519, "signingKey"),
        _key(body.get("encryptionKey"), KeyType.X25519, "encryptionKey"),
        tuple(_key(p.get("signingKey"), KeyType.ED25519, "previous signingKey") for p in previous),
        tuple(
            _key(p.get("encryptionKey"), KeyType.X25519, "previous encryptionKey") for p in previous
        ),
    )


async def fetch_public_keys(client: httpx.AsyncClient, base_url: str, did: str) -> PublishedKeys:
    """`GET <base_url>/xrpc/chat.hearth.v1.key.public?did=` and validate the answer."""
    try:
        resp = await client.get(f"{base_url.rstrip('/')}/xrpc/{PUBLIC_NSID}", params={"did": did})
    except httpx.HTTPError as e:
        raise KeyLookupError(f"keyserver unreachable: {type(e).__name__}") from e
    if resp.status_code != 200:
        raise KeyLookupError(f"keyserver answered {resp.status_code}", resp.status_code)
    try:
        body = resp.json()
    except ValueError as e:
        raise KeyLookupError("keyserver answer is not JSON") from e
    return parse_public_keys(body, did)
