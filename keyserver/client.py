"""A small async client for the keyserver, for peers, tools and tests.

    async with KeyserverClient("https://keys.example") as ks:
        bob = await ks.public("did:plc:…")          # PublicKeys
        sealed = hearth.sealed.seal(..., recipient_key=bob.encryption, ...)
        mine = await ks.private(token)              # PrivateKeys; token: service-auth JWT
                                                    # with aud = await ks.service_did()

Answers are checked once here: key types, lengths, and that private keys
match the public keys they come with. Refusals raise `KeyserverError` with the
HTTP status and the atproto error name.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from hearth.keys import KeyFormatError, PublicKey
from keyserver.keypair import (
    ED25519_PRIV,
    X25519_PRIV,
    KeyPair,
    PublicPair,
    parse_private_multibase,
)


class KeyserverError(Exception):
    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(f"{status} {error}: {message}")
        self.status = status
        self.error = error
        self.message = message


@dataclass(frozen=True, slots=True)
class PreviousKeys:
    keys: PublicPair
    valid_until: str  # RFC 3339
    private: KeyPair | None = None  # only in answers to the owner, where the server held it


@dataclass(frozen=True, slots=True)
class PublicKeys:
    did: str
    keys: PublicPair
    previous: tuple[PreviousKeys, ...]

    @property
    def encryption(self) -> PublicKey:
        """The X25519 key to seal for (`hearth.sealed.seal(recipient_key=…)`)."""
        return self.keys.encryption

    @property
    def signing_keys(self) -> list[PublicKey]:
        """Current and previous Ed25519 keys: what a signature by this DID may verify under."""
        return [self.keys.signing, *(p.keys.signing for p in self.previous)]


@dataclass(frozen=True, slots=True)
class PrivateKeys:
    did: str
    current: KeyPair
    previous: tuple[PreviousKeys, ...]

    def __repr__(self) -> str:
        return f"PrivateKeys({self.did!r}, <private>)"

    @property
    def encryption_secrets(self) -> list[bytes]:
        """X25519 private keys, newest first: try each to open what was sealed for this DID."""
        out = [self.current.encryption_secret]
        out += [p.private.encryption_secret for p in self.previous if p.private is not None]
        return out


def _field(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise KeyserverError(502, "BadAnswer", f"{name} missing from the keyserver's answer")
    return value


def _pair(data: dict[str, Any]) -> PublicPair:
    try:
        return PublicPair(
            PublicKey.from_did_key(_field(data, "signingKey")),
            PublicKey.from_did_key(_field(data, "encryptionKey")),
        )
    except KeyFormatError as e:
        raise KeyserverError(502, "BadAnswer", f"bad key in the keyserver's answer: {e}") from e


def _private(data: dict[str, Any], public: PublicPair) -> KeyPair:
    try:
        code_s, seed = parse_private_multibase(_field(data, "signingPrivateKey"))
        code_e, secret = parse_private_multibase(_field(data, "encryptionPrivateKey"))
        pair = KeyPair.from_private(seed, secret)
    except KeyFormatError as e:
        raise KeyserverError(502, "BadAnswer", f"bad private key in the answer: {e}") from e
    if (code_s, code_e) != (ED25519_PRIV, X25519_PRIV) or pair.public != public:
        raise KeyserverError(502, "BadAnswer", "private keys do not match the public keys")
    return pair


def _previous(data: dict[str, Any], *, with_private: bool) -> tuple[PreviousKeys, ...]:
    items = data.get("previous", [])
    if not isinstance(items, list):
        raise KeyserverError(502, "BadAnswer", "previous must be a list")
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise KeyserverError(502, "BadAnswer", "previous entries must be objects")
        keys = _pair(item)
        private = None
        if with_private and "signingPrivateKey" in item:
            private = _private(item, keys)
        out.append(PreviousKeys(keys, _field(item, "validUntil"), private))
    return tuple(out)


def parse_public(data: dict[str, Any]) -> PublicKeys:
    return PublicKeys(_field(data, "did"), _pair(data), _previous(data, with_private=False))


def parse_private(data: dict[str, Any]) -> PrivateKeys:
    public = _pair(data)
    return PrivateKeys(
        _field(data, "did"), _private(data, public), _previous(data, with_private=True)
    )


class KeyserverClient:
    """Calls one keyserver. Use as an async context manager, or call `aclose()`."""

    def __init__(self, base_url: str, *, http: httpx.AsyncClient | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._own = http is None
        self._http = http or httpx.AsyncClient(timeout=10.0)

    async def __aenter__(self) -> KeyserverClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own:
            await self._http.aclose()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = await self._http.request(
            method, self.base_url + path, params=params, json=body, headers=headers
        )
        try:
            data = r.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise KeyserverError(r.status_code, "BadAnswer", "answer is not a JSON object")
        if r.status_code != 200:
            raise KeyserverError(
                r.status_code, str(data.get("error", "Error")), str(data.get("message", ""))
            )
        return data

    async def service_did(self) -> str:
        """The keyserver's DID: the `aud` of the tokens it accepts."""
        return _field(await self._call("GET", "/.well-known/did.json"), "id")

    async def public(self, did: str) -> PublicKeys:
        """Anybody's public keys. 404 `NotFound` when the DID has none and gets none."""
        data = await self._call("GET", "/xrpc/chat.hearth.v1.key.public", params={"did": did})
        return parse_public(data)

    async def private(self, token: str) -> PrivateKeys:
        """The token issuer's own keys (lxm `chat.hearth.v1.key.private`).
        404 `KeyHeldByOwner` when the server holds no private key for it."""
        return parse_private(
            await self._call("GET", "/xrpc/chat.hearth.v1.key.private", token=token)
        )

    async def rotate(self, token: str) -> PrivateKeys:
        """New keys for the token's issuer (lxm `chat.hearth.v1.key.rotate`)."""
        return parse_private(
            await self._call("POST", "/xrpc/chat.hearth.v1.key.rotate", token=token)
        )

    async def register(self, token: str, keys: PublicPair) -> PublicKeys:
        """Publish the issuer's own public keys (lxm `chat.hearth.v1.key.register`)."""
        body = {"signingKey": keys.signing.did_key, "encryptionKey": keys.encryption.did_key}
        return parse_public(
            await self._call("POST", "/xrpc/chat.hearth.v1.key.register", token=token, body=body)
        )
