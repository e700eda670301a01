"""The keys the keyserver hands out: an Ed25519 signing key and an X25519 encryption key.

Public keys travel as did:key strings (`hearth.keys.PublicKey`). Private keys
travel as Multikey `secretKeyMultibase` strings: base58btc of the multicodec
`ed25519-priv` (0x1300) or `x25519-priv` (0x1302) varint followed by the raw
32 bytes (the Ed25519 seed, the X25519 scalar).
"""

from __future__ import annotations

from dataclasses import dataclass

import nacl.bindings
import nacl.exceptions
import nacl.public
import nacl.signing

from hearth.base58 import Base58Error, b58decode, b58encode
from hearth.keys import KeyFormatError, KeyType, PublicKey

ED25519_PRIV = 0x1300
X25519_PRIV = 0x1302
PRIVATE_LEN = 64  # seed || scalar, the plaintext that gets sealed


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def private_multibase(code: int, raw: bytes) -> str:
    """`z…` secret-key multibase for a 32-byte private key with multicodec `code`."""
    return "z" + b58encode(_varint(code) + raw)


def parse_private_multibase(text: str) -> tuple[int, bytes]:
    """Inverse of `private_multibase`: (multicodec code, 32 raw bytes)."""
    if not text.startswith("z"):
        raise KeyFormatError("multibase key must be base58btc ('z' prefix)")
    try:
        data = b58decode(text[1:])
    except Base58Error as e:
        raise KeyFormatError(str(e)) from e
    for code in (ED25519_PRIV, X25519_PRIV):
        prefix = _varint(code)
        if data.startswith(prefix) and len(data) == len(prefix) + 32:
            return code, data[len(prefix) :]
    raise KeyFormatError("not an ed25519-priv or x25519-priv multikey")


@dataclass(frozen=True, slots=True)
class PublicPair:
    """The public half: what anybody may learn about a DID's keys."""

    signing: PublicKey  # Ed25519
    encryption: PublicKey  # X25519

    def __post_init__(self) -> None:
        if self.signing.type is not KeyType.ED25519:
            raise KeyFormatError("signing key must be Ed25519")
        if self.encryption.type is not KeyType.X25519:
            raise KeyFormatError("encryption key must be X25519")

    @classmethod
    def from_raw(cls, signing: bytes, encryption: bytes) -> PublicPair:
        return cls(PublicKey(KeyType.ED25519, signing), PublicKey(KeyType.X25519, encryption))


@dataclass(frozen=True, slots=True)
class KeyPair:
    """Both halves. Only ever built from fresh randomness or from an opened seal."""

    signing_seed: bytes  # 32-byte Ed25519 seed
    encryption_secret: bytes  # 32-byte X25519 scalar
    public: PublicPair

    def __repr__(self) -> str:  # never let a private key reach a log line by accident
        return f"KeyPair(public={self.public!r})"

    @classmethod
    def generate(cls) -> KeyPair:
        signing = nacl.signing.SigningKey.generate()
        encryption = nacl.public.PrivateKey.generate()
        return cls.from_private(bytes(signing), bytes(encryption))

    @classmethod
    def from_private(cls, signing_seed: bytes, encryption_secret: bytes) -> KeyPair:
        """Rebuild a pair from its private halves, deriving the public keys."""
        if len(signing_seed) != 32 or len(encryption_secret) != 32:
            raise KeyFormatError("private keys must be 32 bytes each")
        sk = nacl.signing.SigningKey(signing_seed)
        pk = nacl.public.PrivateKey(encryption_secret)
        public = PublicPair.from_raw(bytes(sk.verify_key), bytes(pk.public_key))
        return cls(signing_seed, encryption_secret, public)

    def private_bytes(self) -> bytes:
        """The 64 bytes that get sealed: seed || scalar."""
        return self.signing_seed + self.encryption_secret

    @classmethod
    def from_private_bytes(cls, data: bytes) -> KeyPair:
        if len(data) != PRIVATE_LEN:
            raise KeyFormatError("sealed private keys must be 64 bytes")
        return cls.from_private(data[:32], data[32:])

    @property
    def signing_private_multibase(self) -> str:
        return private_multibase(ED25519_PRIV, self.signing_seed)

    @property
    def encryption_private_multibase(self) -> str:
        return private_multibase(X25519_PRIV, self.encryption_secret)


def did_key_pair(did: str) -> PublicPair | None:
    """The keys a did:key identity has without any server: its own Ed25519 key to
    sign, and that key's X25519 (Montgomery) form to encrypt. None for did:keys
    that are not Ed25519.

    The owner derives the matching X25519 private key from its Ed25519 seed with
    libsodium's `crypto_sign_ed25519_sk_to_curve25519`.
    """
    try:
        key = PublicKey.from_did_key(did)
    except KeyFormatError:
        return None
    if key.type is not KeyType.ED25519:
        return None
    try:
        x = nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(key.raw)
    except nacl.exceptions.RuntimeError:
        return None
    return PublicPair(key, PublicKey(KeyType.X25519, bytes(x)))
