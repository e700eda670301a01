"""The keyserver's wire formats: parsing requests once, rendering responses.

Public keys are did:key strings; private keys are Multikey secret-key
multibase strings (see `keyserver.keypair`); times are RFC 3339 UTC with
milliseconds. Roomy v0 answers carry raw 32-byte keys as lowercase Crockford
base32.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hearth import crockford
from hearth.identity import IdentitySyntaxError, parse_did
from hearth.jsontext import decoded_encodable
from hearth.keys import KeyFormatError, PublicKey
from hearth.types import Did
from keyserver.keypair import PublicPair
from keyserver.keyring import PrivateView, PublicView

MAX_BODY_BYTES = 4096
MAX_KEY_TEXT = 200


class BadRequest(ValueError):
    """Input that does not parse; the message is safe to return to the caller."""


def parse_did_param(value: str | None) -> Did:
    if not value:
        raise BadRequest("did is required")
    try:
        return parse_did(value)
    except IdentitySyntaxError as e:
        raise BadRequest(str(e)) from e


def _public_key(value: object, name: str) -> PublicKey:
    if not isinstance(value, str) or not value or len(value) > MAX_KEY_TEXT:
        raise BadRequest(f"{name} must be a did:key string")
    try:
        if value.startswith("did:key:"):
            return PublicKey.from_did_key(value)
        return PublicKey.from_multibase(value)
    except KeyFormatError as e:
        raise BadRequest(f"{name}: {e}") from e


@dataclass(frozen=True, slots=True)
class RegisterRequest:
    keys: PublicPair

    @classmethod
    def parse(cls, body: bytes) -> RegisterRequest:
        """`{"signingKey": did:key Ed25519, "encryptionKey": did:key X25519}`."""
        try:
            # Strict UTF-8 first: json.loads(bytes) would let encoded surrogates through.
            text = body.decode("utf-8")
            data = json.loads(text)
        # Deeply nested JSON raises RecursionError, not ValueError.
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise BadRequest("body must be a JSON object") from e
        if not isinstance(data, dict):
            raise BadRequest("body must be a JSON object")
        if not decoded_encodable(text, data):
            raise BadRequest("strings must not contain lone surrogates")
        signing = _public_key(data.get("signingKey"), "signingKey")
        encryption = _public_key(data.get("encryptionKey"), "encryptionKey")
        try:
            return cls(PublicPair(signing, encryption))
        except KeyFormatError as e:
            raise BadRequest(str(e)) from e


def json_bytes(body: dict[str, Any]) -> bytes:
    """The same bytes starlette's JSONResponse writes."""
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def timestamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _pair(keys: PublicPair) -> dict[str, Any]:
    return {"signingKey": keys.signing.did_key, "encryptionKey": keys.encryption.did_key}


def _valid_until(ms: int | None) -> dict[str, Any]:
    return {} if ms is None else {"validUntil": timestamp(ms)}


def render_public(view: PublicView) -> dict[str, Any]:
    return {
        "did": view.did,
        **_pair(view.current),
        "previous": [{**_pair(g.keys), **_valid_until(g.valid_until)} for g in view.previous],
    }


def render_private(view: PrivateView) -> dict[str, Any]:
    previous = []
    for g in view.previous:
        item = {**_pair(g.public), **_valid_until(g.valid_until)}
        if g.private is not None:
            item["signingPrivateKey"] = g.private.signing_private_multibase
            item["encryptionPrivateKey"] = g.private.encryption_private_multibase
        previous.append(item)
    return {
        "did": view.did,
        **_pair(view.current.public),
        "signingPrivateKey": view.current.signing_private_multibase,
        "encryptionPrivateKey": view.current.encryption_private_multibase,
        "previous": previous,
    }


def render_roomy_public(view: PublicView) -> dict[str, Any]:
    return {"publicKey": crockford.encode(view.current.signing.raw)}


def render_roomy_private(view: PrivateView) -> dict[str, Any]:
    return {
        "publicKey": crockford.encode(view.current.public.signing.raw),
        "privateKey": crockford.encode(view.current.signing_seed),
    }
