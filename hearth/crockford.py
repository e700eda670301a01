"""Lowercase Crockford base32, as Roomy v0 writes keys and router tokens."""

from __future__ import annotations

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
_INDEX.update({c.upper(): i for c, i in list(_INDEX.items())})
for _alias, _target in (("o", "0"), ("O", "0"), ("i", "1"), ("I", "1"), ("l", "1"), ("L", "1")):
    _INDEX[_alias] = _INDEX[_target]


class Base32Error(ValueError):
    """Raised for text that is not Crockford base32."""


def encode(data: bytes) -> str:
    bits = 0
    value = 0
    out = []
    for byte in data:
        value = (value << 8) | byte
        bits += 8
        while bits >= 5:
            bits -= 5
            out.append(ALPHABET[(value >> bits) & 31])
    if bits:
        out.append(ALPHABET[(value << (5 - bits)) & 31])
    return "".join(out)


def decode(text: str) -> bytes:
    bits = 0
    value = 0
    out = bytearray()
    for c in text:
        i = _INDEX.get(c)
        if i is None:
            raise Base32Error(f"invalid base32 character {c!r}")
        value = ((value << 5) | i) & 0xFFFF
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append((value >> bits) & 0xFF)
    return bytes(out)
