"""LEB128 integers and a bounds-checked byte reader.

Every read checks the remaining length first, so decoding never allocates more than
the input holds and never reads past its end; problems raise :class:`AutomergeError`
with the absolute offset.
"""

from __future__ import annotations

from .errors import AutomergeError

MAX_U64 = (1 << 64) - 1
MIN_I64 = -(1 << 63)
MAX_I64 = (1 << 63) - 1
_MAX_LEB_BYTES = 10  # 64 bits in 7-bit groups


def encode_uleb(value: int) -> bytes:
    """Unsigned LEB128 of ``0 <= value < 2**64``."""
    if value < 0 or value > MAX_U64:
        raise AutomergeError(f"uleb out of range: {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_sleb(value: int) -> bytes:
    """Signed LEB128 of a value in the i64 range."""
    if value < MIN_I64 or value > MAX_I64:
        raise AutomergeError(f"sleb out of range: {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        done = (value == 0 and not byte & 0x40) or (value == -1 and byte & 0x40)
        if done:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


class Reader:
    """Sequential reader over ``data[pos:end]``; offsets in errors are relative to ``base``.

    ``base`` lets a reader over a sub-slice report offsets in the enclosing input.
    """

    __slots__ = ("data", "pos", "end", "base")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None, base: int = 0) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end
        self.base = base

    def error(self, reason: str, pos: int | None = None) -> AutomergeError:
        return AutomergeError(reason, self.base + (self.pos if pos is None else pos))

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def at_end(self) -> bool:
        return self.pos >= self.end

    def u8(self) -> int:
        if self.pos >= self.end:
            raise self.error("unexpected end of input reading a byte")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def take(self, n: int, what: str = "bytes") -> bytes:
        if n < 0 or n > self.end - self.pos:
            raise self.error(f"{what}: length {n} exceeds the {self.end - self.pos} bytes left")
        start = self.pos
        self.pos += n
        return self.data[start : self.pos]

    def uleb(self, what: str = "uleb") -> int:
        data, pos, end = self.data, self.pos, self.end
        if pos < end and data[pos] < 0x80:  # fast path: most values fit in one byte
            self.pos = pos + 1
            return data[pos]
        start = pos
        result = 0
        shift = 0
        while True:
            if pos >= end:
                raise self.error(f"{what}: truncated LEB128", start)
            if pos - start >= _MAX_LEB_BYTES:
                raise self.error(f"{what}: LEB128 longer than 10 bytes", start)
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if result > MAX_U64:
            raise self.error(f"{what}: LEB128 value exceeds 64 bits", start)
        if pos - start > 1 and byte == 0:
            raise self.error(f"{what}: overlong LEB128", start)
        self.pos = pos
        return result

    def sleb(self, what: str = "sleb") -> int:
        data, pos, end = self.data, self.pos, self.end
        start = pos
        result = 0
        shift = 0
        while True:
            if pos >= end:
                raise self.error(f"{what}: truncated LEB128", start)
            if pos - start >= _MAX_LEB_BYTES:
                raise self.error(f"{what}: LEB128 longer than 10 bytes", start)
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if byte & 0x40:
            result -= 1 << shift
        if result < MIN_I64 or result > MAX_I64:
            raise self.error(f"{what}: LEB128 value exceeds 64 bits", start)
        self.pos = pos
        return result

    def count(self, item_size: int, what: str) -> int:
        """A uleb element count, rejected unless ``count * item_size`` bytes could follow."""
        start = self.pos
        n = self.uleb(what)
        if n * max(item_size, 1) > self.end - self.pos:
            raise self.error(
                f"{what}: count {n} cannot fit in the {self.remaining} bytes left", start
            )
        return n

    def length_prefixed(self, what: str) -> bytes:
        start = self.pos
        n = self.uleb(what)
        if n > self.end - self.pos:
            raise self.error(f"{what}: length {n} exceeds the {self.remaining} bytes left", start)
        return self.take(n, what)

    def hashes(self, what: str) -> list[bytes]:
        """A uleb count followed by that many 32-byte hashes."""
        n = self.count(32, what)
        data, pos = self.data, self.pos
        out = [data[pos + 32 * i : pos + 32 * (i + 1)] for i in range(n)]
        self.pos = pos + 32 * n
        return out


def encode_hashes(hashes: list[bytes]) -> bytes:
    return encode_uleb(len(hashes)) + b"".join(hashes)


def encode_bytes(value: bytes) -> bytes:
    return encode_uleb(len(value)) + value
