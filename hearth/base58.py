"""Bitcoin-alphabet base58 (used by multibase `z…` strings and bs58check)."""

from __future__ import annotations

import hashlib

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}

# Longest base58 text we accept; did:key keys are < 100 characters.
MAX_TEXT = 4096


class Base58Error(ValueError):
    """Raised for text that is not valid base58 (or bs58check)."""


def b58encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(ALPHABET[r])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    if len(text) > MAX_TEXT:
        raise Base58Error("base58 text too long")
    n = 0
    for c in text:
        i = _INDEX.get(c)
        if i is None:
            raise Base58Error(f"invalid base58 character {c!r}")
        n = n * 58 + i
    zeros = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * zeros + body


def _checksum(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()[:4]


def b58check_encode(data: bytes) -> str:
    return b58encode(data + _checksum(data))


def b58check_decode(text: str) -> bytes:
    raw = b58decode(text)
    if len(raw) < 4:
        raise Base58Error("bs58check text too short")
    data, check = raw[:-4], raw[-4:]
    if _checksum(data) != check:
        raise Base58Error("bs58check checksum mismatch")
    return data
