"""The Bloom filter of Automerge's sync protocol, bit for bit.

Encoding: zero entries is zero bytes. Otherwise ``uleb entries, uleb bits_per_entry
(10), uleb probes (7)`` then ``ceil(entries * bits_per_entry / 8)`` bytes. Probe
positions come from the little-endian u32 words at hash[0:4], [4:8], [8:12], each
taken modulo ``m = 8 * len(bits)``: probe ``x``, then ``x = (x + y) % m; y = (y + z) % m``.
Bit ``p`` is ``bits[p >> 3] & (1 << (p & 7))``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from .leb128 import Reader, encode_uleb

BITS_PER_ENTRY = 10
NUM_PROBES = 7
_WORDS = struct.Struct("<III")


def _capacity(entries: int, bits_per_entry: int) -> int:
    return (entries * bits_per_entry + 7) // 8


class BloomFilter:
    """A set of change hashes with false positives (about 1% at 10 bits, 7 probes)."""

    __slots__ = ("entries", "bits_per_entry", "probes", "bits")

    def __init__(
        self,
        entries: int = 0,
        bits_per_entry: int = BITS_PER_ENTRY,
        probes: int = NUM_PROBES,
        bits: bytes | bytearray = b"",
    ) -> None:
        self.entries = entries
        self.bits_per_entry = bits_per_entry
        self.probes = probes
        self.bits = bytearray(bits)

    @classmethod
    def from_hashes(cls, hashes: Iterable[bytes]) -> BloomFilter:
        hash_list = list(hashes)
        f = cls(len(hash_list))
        f.bits = bytearray(_capacity(len(hash_list), BITS_PER_ENTRY))
        for h in hash_list:
            f._add(h)
        return f

    def _positions(self, h: bytes) -> list[int]:
        m = 8 * len(self.bits)
        x, y, z = _WORDS.unpack_from(h)
        x, y, z = x % m, y % m, z % m
        out = [x]
        for _ in range(1, self.probes):
            x = (x + y) % m
            y = (y + z) % m
            out.append(x)
        return out

    def _add(self, h: bytes) -> None:
        bits = self.bits
        for p in self._positions(h):
            bits[p >> 3] |= 1 << (p & 7)

    def __contains__(self, h: object) -> bool:
        bits = self.bits
        if not isinstance(h, bytes) or len(h) < 12 or self.entries == 0 or not bits:
            return False
        # Same probe sequence as _positions, inlined: this runs once per candidate change.
        m = 8 * len(bits)
        x, y, z = _WORDS.unpack_from(h)
        x, y, z = x % m, y % m, z % m
        for _ in range(max(self.probes, 1)):  # Automerge always probes at least once
            if not bits[x >> 3] & (1 << (x & 7)):
                return False
            x = (x + y) % m
            y = (y + z) % m
        return True

    def encode(self) -> bytes:
        if self.entries == 0:
            return b""
        return (
            encode_uleb(self.entries)
            + encode_uleb(self.bits_per_entry)
            + encode_uleb(self.probes)
            + bytes(self.bits)
        )

    @classmethod
    def decode(cls, data: bytes, base: int = 0) -> BloomFilter:
        """Parse an encoded filter; ``base`` is its offset in the enclosing input."""
        if not data:
            return cls()
        r = Reader(data, base=base)
        entries = r.uleb("bloom entries")
        bits_per_entry = r.uleb("bloom bits per entry")
        probes_pos = r.pos
        probes = r.uleb("bloom probes")
        if probes > 64:
            raise r.error(f"bloom probes {probes} is unreasonable", probes_pos)
        size = _capacity(entries, bits_per_entry)
        if size > r.remaining:
            raise r.error(f"bloom filter needs {size} bytes, only {r.remaining} left")
        bits = r.take(size, "bloom bits")
        return cls(entries, bits_per_entry, probes, bits)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BloomFilter) and self.encode() == other.encode()

    def __hash__(self) -> int:
        return hash(self.encode())

    def __repr__(self) -> str:
        return f"BloomFilter(entries={self.entries}, bytes={len(self.bits)})"
