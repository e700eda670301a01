"""Public keys as did:key / Multikey strings, and signature checks.

Formats: multibase base58btc (`z` prefix) of a multicodec varint followed by the
raw key. Ed25519 and X25519 keys are 32 bytes; P-256 and secp256k1 keys are
SEC1 compressed points (33 bytes). ECDSA signatures are raw `r || s` (64
bytes) and must be low-S, as atproto requires.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from hearth.base58 import Base58Error, b58decode, b58encode


class KeyFormatError(ValueError):
    """Raised for a malformed key string or key bytes."""


class KeyType(enum.Enum):
    ED25519 = "ed25519"
    X25519 = "x25519"
    P256 = "p256"
    SECP256K1 = "secp256k1"


# multicodec code -> key type, and the varint prefix written before the key.
_CODECS: dict[KeyType, int] = {
    KeyType.ED25519: 0xED,
    KeyType.X25519: 0xEC,
    KeyType.P256: 0x1200,
    KeyType.SECP256K1: 0xE7,
}
_KEY_LEN = {KeyType.ED25519: 32, KeyType.X25519: 32, KeyType.P256: 33, KeyType.SECP256K1: 33}

# JWT algorithm that belongs to each signing key type.
JWT_ALG = {KeyType.ED25519: "EdDSA", KeyType.P256: "ES256", KeyType.SECP256K1: "ES256K"}

_P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_K256_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _read_varint(data: bytes) -> tuple[int, int]:
    n = 0
    for i in range(min(len(data), 4)):
        n |= (data[i] & 0x7F) << (7 * i)
        if not data[i] & 0x80:
            return n, i + 1
    raise KeyFormatError("bad multicodec varint")


_BY_CODE = {code: kt for kt, code in _CODECS.items()}


@dataclass(frozen=True, slots=True)
class PublicKey:
    type: KeyType
    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != _KEY_LEN[self.type]:
            raise KeyFormatError(f"{self.type.value} key must be {_KEY_LEN[self.type]} bytes")
        if self.type in (KeyType.P256, KeyType.SECP256K1):
            try:
                ec.EllipticCurvePublicKey.from_encoded_point(_curve(self.type), self.raw)
            except ValueError as e:
                raise KeyFormatError(f"invalid {self.type.value} point") from e

    @property
    def multibase(self) -> str:
        """Multikey `publicKeyMultibase` form (`z…`)."""
        return "z" + b58encode(_varint(_CODECS[self.type]) + self.raw)

    @property
    def did_key(self) -> str:
        return "did:key:" + self.multibase

    @property
    def jwt_alg(self) -> str:
        alg = JWT_ALG.get(self.type)
        if alg is None:
            raise KeyFormatError(f"{self.type.value} keys cannot sign")
        return alg

    @classmethod
    def from_multibase(cls, text: str) -> PublicKey:
        if not text.startswith("z"):
            raise KeyFormatError("multibase key must be base58btc ('z' prefix)")
        try:
            data = b58decode(text[1:])
        except Base58Error as e:
            raise KeyFormatError(str(e)) from e
        code, used = _read_varint(data)
        kt = _BY_CODE.get(code)
        if kt is None:
            raise KeyFormatError(f"unsupported multicodec 0x{code:x}")
        return cls(kt, data[used:])

    @classmethod
    def from_did_key(cls, did: str) -> PublicKey:
        if not did.startswith("did:key:"):
            raise KeyFormatError("not a did:key")
        return cls.from_multibase(did[len("did:key:") :])

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True when `signature` is a valid (and, for ECDSA, low-S) signature of `message`."""
        if self.type is KeyType.ED25519:
            try:
                ed25519.Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
            except InvalidSignature:
                return False
            return True
        if self.type is KeyType.X25519:
            return False
        if len(signature) != 64:
            return False
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:], "big")
        n = _P256_N if self.type is KeyType.P256 else _K256_N
        if not (0 < r < n and 0 < s <= n // 2):
            return False
        key = ec.EllipticCurvePublicKey.from_encoded_point(_curve(self.type), self.raw)
        try:
            key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True


def _curve(kt: KeyType) -> ec.EllipticCurve:
    return ec.SECP256R1() if kt is KeyType.P256 else ec.SECP256K1()


def is_high_s(signature: bytes, kt: KeyType) -> bool:
    """True for a raw `r || s` ECDSA signature whose s is in the upper half (n/2, n).

    Such a signature is the malleable twin of a low-S one; atproto refuses it.
    False for other key types, other lengths and out-of-range s (not a signature).
    """
    if kt not in (KeyType.P256, KeyType.SECP256K1) or len(signature) != 64:
        return False
    n = _P256_N if kt is KeyType.P256 else _K256_N
    return n // 2 < int.from_bytes(signature[32:], "big") < n
