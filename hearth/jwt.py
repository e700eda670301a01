"""Compact JWS (JWT) encoding, parsing and signing.

Verification policy (audience, lxm, replay, key lookup) lives in `hearth.auth`;
this module only turns tokens into parts and signs new ones.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import time
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from hearth.keys import KeyType, PublicKey

MAX_TOKEN_LENGTH = 8192


class JwtFormatError(ValueError):
    """Raised for a token that is not a well-formed compact JWS with JSON parts."""


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    if not text.isascii() or "=" in text:
        raise JwtFormatError("base64url must be unpadded ASCII")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as e:
        raise JwtFormatError("invalid base64url") from e


@dataclass(frozen=True, slots=True)
class ParsedJwt:
    header: dict[str, Any]
    payload: dict[str, Any]
    signing_input: bytes
    signature: bytes


def parse_jwt(token: str) -> ParsedJwt:
    """Split and decode a compact JWS. Raises JwtFormatError, nothing else."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        raise JwtFormatError("token missing or too long")
    parts = token.split(".")
    if len(parts) != 3:
        raise JwtFormatError("token must have three parts")
    header = _json_part(parts[0], "header")
    payload = _json_part(parts[1], "payload")
    return ParsedJwt(
        header, payload, (parts[0] + "." + parts[1]).encode("ascii"), b64url_decode(parts[2])
    )


def _json_part(text: str, what: str) -> dict[str, Any]:
    raw = b64url_decode(text)
    try:
        value = json.loads(raw)
    # Deeply nested JSON raises RecursionError, not ValueError.
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise JwtFormatError(f"{what} is not JSON") from e
    if not isinstance(value, dict):
        raise JwtFormatError(f"{what} must be a JSON object")
    return value


class Signer:
    """A private signing key (Ed25519, P-256 or secp256k1) that signs JWTs.

    ECDSA signatures are written raw (r || s) and normalised to low-S.
    """

    def __init__(
        self, key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey, key_type: KeyType
    ) -> None:
        self._key = key
        self.key_type = key_type
        if isinstance(key, ed25519.Ed25519PrivateKey):
            raw = key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
        else:
            raw = key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
            )
        self.public_key = PublicKey(key_type, raw)

    @classmethod
    def generate(cls, key_type: KeyType = KeyType.ED25519) -> Signer:
        if key_type is KeyType.ED25519:
            return cls(ed25519.Ed25519PrivateKey.generate(), key_type)
        curve: ec.EllipticCurve = ec.SECP256R1() if key_type is KeyType.P256 else ec.SECP256K1()
        return cls(ec.generate_private_key(curve), key_type)

    @classmethod
    def from_ed25519_seed(cls, seed: bytes) -> Signer:
        return cls(ed25519.Ed25519PrivateKey.from_private_bytes(seed), KeyType.ED25519)

    @property
    def did_key(self) -> str:
        return self.public_key.did_key

    def sign(self, message: bytes) -> bytes:
        if isinstance(self._key, ed25519.Ed25519PrivateKey):
            return self._key.sign(message)
        der = self._key.sign(message, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        order = _ORDERS[self.key_type]
        if s > order // 2:
            s = order - s
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


_ORDERS = {
    KeyType.P256: 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    KeyType.SECP256K1: 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141,
}


def encode_jwt(header: dict[str, Any], payload: dict[str, Any], signer: Signer) -> str:
    """Sign `payload` under `header` and return the compact token."""
    head = b64url_encode(json.dumps(header, separators=(",", ":")).encode())
    body = b64url_encode(json.dumps(payload, separators=(",", ":")).encode())
    signing_input = f"{head}.{body}".encode("ascii")
    return f"{head}.{body}.{b64url_encode(signer.sign(signing_input))}"


def mint_service_jwt(
    signer: Signer,
    *,
    iss: str,
    aud: str,
    lxm: str | None,
    ttl: int = 60,
    now: float | None = None,
) -> str:
    """A service-auth JWT as atproto PDSes mint them (and did:key clients mint for themselves).

    `iss` is the caller's DID (for did:key users, `signer.did_key`), `aud` the
    service's DID, `lxm` the XRPC method the token is good for.
    """
    issued = int(time.time() if now is None else now)
    payload: dict[str, Any] = {
        "iss": iss,
        "aud": aud,
        "exp": issued + ttl,
        "iat": issued,
        "jti": os.urandom(16).hex(),
    }
    if lxm is not None:
        payload["lxm"] = lxm
    return encode_jwt({"alg": signer.public_key.jwt_alg, "typ": "JWT"}, payload, signer)
